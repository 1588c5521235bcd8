import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig, usage } from '../src/config/config.ts';
import { isOperatorError } from '../src/errors/operator-error.ts';

describe('operator configuration', () => {
  test('defaults: all namespaces, admin port 9090, 4 workers, leader election on', () => {
    const c = loadConfig([], { POD_NAMESPACE: 'ops', POD_NAME: 'op-0' });
    assert.deepEqual(c.namespaces, []);
    assert.equal(c.sidecarAdminPort, 9090);
    assert.equal(c.workers, 4);
    assert.deepEqual(c.listen, { host: '0.0.0.0', port: 8081 });
    assert.deepEqual(c.webhookListen, { host: '0.0.0.0', port: 8082 });
    assert.equal(c.leaderElect, true);
    assert.equal(c.leaseNamespace, 'ops');
    assert.equal(c.leaseName, 'gitmirror-operator');
    assert.equal(c.identity, 'op-0');
    assert.equal(c.adminTokenSecret, 'gitmirror-admin-token');
    assert.equal(c.resyncMs, 600_000);
    assert.equal(c.warmupPollMs, 5_000);
    assert.equal(c.kubeconfig, undefined);
  });

  test('environment variables set options and flags win over them', () => {
    const env = {
      GITMIRROR_OPERATOR_NAMESPACES: 'a, b',
      GITMIRROR_OPERATOR_WORKERS: '2',
      GITMIRROR_OPERATOR_LEADER_ELECT: 'false',
    };
    const c = loadConfig(['--workers', '8', '--listen=127.0.0.1:9999', '--kubeconfig', '/tmp/kc'], env);
    assert.deepEqual(c.namespaces, ['a', 'b']);
    assert.equal(c.workers, 8);
    assert.equal(c.leaderElect, false);
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 9999 });
    assert.equal(c.kubeconfig, '/tmp/kc');
  });

  const invalid: [string, string[], NodeJS.ProcessEnv, RegExp][] = [
    ['an unknown flag', ['--wrokers', '2'], {}, /Unknown option '--wrokers'/],
    [
      'a port out of range',
      ['--sidecar-admin-port', '70000'],
      {},
      /--sidecar-admin-port \(GITMIRROR_OPERATOR_SIDECAR_ADMIN_PORT\)/,
    ],
    ['zero workers', [], { GITMIRROR_OPERATOR_WORKERS: '0' }, /an integer from 1 to 64/],
    ['a non-boolean', ['--leader-elect', 'yes'], {}, /true or false/],
    ['a bad duration', ['--resync', '10 minutes'], {}, /a duration such as/],
    ['a too short resync', ['--resync', '1s'], {}, /at least 10000 ms/],
    ['listen without port', ['--listen', 'localhost'], {}, /host:port/],
    [
      'a webhook listen address without port',
      [],
      { GITMIRROR_OPERATOR_WEBHOOK_LISTEN: 'hooks' },
      /--webhook-listen \(GITMIRROR_OPERATOR_WEBHOOK_LISTEN\): "hooks" is not host:port/,
    ],
  ];
  for (const [name, argv, env, message] of invalid) {
    test(`refuses ${name} at start`, () => {
      assert.throws(
        () => loadConfig(argv, env),
        (err) => isOperatorError(err, 'CONFIG_INVALID') && message.test(err.message),
      );
    });
  }

  test('the webhook receiver can be turned off', () => {
    assert.equal(loadConfig(['--webhook-listen', 'off'], {}).webhookListen, undefined);
    assert.equal(loadConfig([], { GITMIRROR_OPERATOR_WEBHOOK_LISTEN: '' }).webhookListen, undefined);
    assert.deepEqual(loadConfig(['--webhook-listen', '[::]:9000'], {}).webhookListen, {
      host: '::',
      port: 9000,
    });
  });

  test('usage lists every flag with its environment variable', () => {
    assert.match(usage(), /--namespaces\s+GITMIRROR_OPERATOR_NAMESPACES/);
    assert.match(usage(), /--sidecar-admin-port\s+GITMIRROR_OPERATOR_SIDECAR_ADMIN_PORT/);
  });
});
