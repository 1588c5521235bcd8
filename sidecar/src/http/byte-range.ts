import type { Request, Response } from 'express';

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

/**
 * The conditional and range part of a GET or HEAD of a representation with a strong ETag:
 * sets ETag and Accept-Ranges, answers 304 (If-None-Match) and 416 itself and returns
 * undefined then; otherwise returns the range to send and `respond()`, which sets the status
 * (200 or 206), Content-Length and Content-Range once the caller knows it can send the bytes.
 */
export function rangeOfRequest(
  req: Request,
  res: Response,
  representation: { size: number; etag: string },
): { range?: SatisfiableRange; respond(): void } | undefined {
  const { size, etag } = representation;
  res.set({ ETag: etag, 'Accept-Ranges': 'bytes' });
  if (matchesEtag(req.get('if-none-match'), etag)) {
    res.status(304).end();
    return undefined;
  }
  const range = parseRange(req, size, etag);
  if (range === 'unsatisfiable') {
    res.status(416).set('Content-Range', `bytes */${size}`).end();
    return undefined;
  }
  return {
    range,
    respond() {
      res.status(range ? 206 : 200).set('Content-Length', String(range ? range.end - range.start + 1 : size));
      if (range) res.set('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
    },
  };
}
