import type { Request } from 'express';

/** One satisfiable byte range of a representation, `end` inclusive. */
export interface SatisfiableRange {
  start: number;
  end: number;
}

/**
 * The single byte range a GET asks for (`bytes=a-b`, `a-`, `-n`), honouring If-Range against
 * the representation's strong ETag. Multi-range and malformed requests get the whole
 * representation (undefined), as RFC 9110 allows; a range past the end is `unsatisfiable`.
 */
export function parseRange(
  req: Request,
  size: number,
  etag: string,
): SatisfiableRange | 'unsatisfiable' | undefined {
  const header = req.get('range');
  if (!header) return undefined;
  const ifRange = req.get('if-range');
  if (ifRange && ifRange !== etag) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (match[1] === '') {
    start = Math.max(0, size - Number(match[2]));
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  }
  if (start >= size || start > end) return 'unsatisfiable';
  return { start, end };
}

/** Whether an If-None-Match header matches the ETag (weakly, as that header compares). */
export function matchesEtag(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((tag) => {
    const t = tag.trim();
    return t === '*' || t === etag || t === `W/${etag}`;
  });
}
