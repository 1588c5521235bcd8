import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './processes.ts';

/**
 * The control plane's PKI, made with openssl for each run: one CA that signs the API server's
 * serving certificate and every client certificate (identity = CN, groups = O, as the API
 * server reads them), and the key pair that signs service-account tokens.
 */

export interface ClientCert {
  cert: string;
  key: string;
}

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  saKey: string;
  saPub: string;
  /** Client certificate for a user, made on first use and cached. */
  client(name: string, groups?: string[]): Promise<ClientCert>;
}

const DAYS = '2';

export async function createPki(dir: string, serverIps: string[]): Promise<Pki> {
  const path = (name: string) => join(dir, name);
  const caKey = path('ca.key');
  const caCert = path('ca.crt');
  await ecKey(caKey);
  await openssl([
    'req',
    '-x509',
    '-new',
    '-key',
    caKey,
    '-subj',
    '/CN=gitmirror-e2e-ca',
    '-days',
    DAYS,
    '-out',
    caCert,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);

  const dns = ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'];
  dns.push('kubernetes.default.svc.cluster.local');
  const san = [...serverIps.map((ip) => `IP:${ip}`), ...dns.map((name) => `DNS:${name}`)].join(',');
  const serverKey = path('apiserver.key');
  const serverCert = path('apiserver.crt');
  await signed(dir, 'apiserver', '/CN=kube-apiserver', `subjectAltName=${san}\nextendedKeyUsage=serverAuth`, {
    caCert,
    caKey,
  });

  // Service-account tokens are RS256 by default; an RSA key is what every cluster uses.
  const saKey = path('sa.key');
  const saPub = path('sa.pub');
  await openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', saKey]);
  await openssl(['pkey', '-in', saKey, '-pubout', '-out', saPub]);

  const clients = new Map<string, Promise<ClientCert>>();
  // One signing at a time: openssl's serial file (ca.srl) is not safe to update concurrently.
  let queue: Promise<unknown> = Promise.resolve();
  const client = (name: string, groups: string[] = []) => {
    const id = [name, ...groups].join('|');
    let made = clients.get(id);
    if (!made) {
      const file = `client-${clients.size}`;
      const subject = [...groups.map((g) => `/O=${g}`), `/CN=${name}`].join('');
      made = queue.then(() => signed(dir, file, subject, 'extendedKeyUsage=clientAuth', { caCert, caKey }));
      queue = made.catch(() => {});
      clients.set(id, made);
    }
    return made;
  };
  return { dir, caCert, caKey, serverCert, serverKey, saKey, saPub, client };
}

async function signed(
  dir: string,
  name: string,
  subject: string,
  extensions: string,
  ca: { caCert: string; caKey: string },
): Promise<ClientCert> {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  await ecKey(key);
  await openssl(['req', '-new', '-key', key, '-subj', subject, '-out', csr]);
  await writeFile(ext, `${extensions}\nkeyUsage=critical,digitalSignature,keyEncipherment\n`);
  await openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.caCert,
    '-CAkey',
    ca.caKey,
    '-CAcreateserial',
    '-days',
    DAYS,
    '-extfile',
    ext,
    '-out',
    cert,
  ]);
  return { cert, key };
}

function ecKey(path: string): Promise<unknown> {
  return openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
}

function openssl(args: string[]): Promise<unknown> {
  return run('openssl', args, { timeoutMs: 30_000 });
}
