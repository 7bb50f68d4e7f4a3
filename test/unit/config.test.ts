import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, envVars, loadConfig } from '../../src/config/load.js';
import { parseDuration, formatDuration } from '../../src/config/duration.js';
import { didYouMean, editDistance, nearest } from '../../src/config/nearest.js';
import { withCredentials } from '../../src/cli/backends.js';

const dir = mkdtempSync(join(tmpdir(), 'ag-config-'));
function file(content: string): string {
  const p = join(dir, `c${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(p, content);
  return p;
}

test('durations: 90s, 10m, 1h, 3d, 1w, bare seconds', () => {
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('10m'), 600_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('3d'), 259_200_000);
  assert.equal(parseDuration('1w'), 604_800_000);
  assert.equal(parseDuration('600'), 600_000);
  assert.equal(parseDuration(600), 600_000);
  assert.equal(parseDuration('250ms'), 250);
  for (const bad of ['', '1y', '-5s', 'ten minutes', '1h30', null]) assert.equal(parseDuration(bad), null, String(bad));
  assert.equal(formatDuration(5_400_000), '1h30m');
});

test('defaults validate and are what the README promises', () => {
  const c = loadConfig({ env: {} });
  assert.equal(c.policy.maxretry, 5);
  assert.equal(c.policy.findtime, 600_000);
  assert.equal(c.policy.bantime, 3_600_000);
  assert.deepEqual(c.policy.ignoreip, ['127.0.0.0/8', '::1']);
  assert.equal(c.nft.table, 'ami_guard');
  assert.equal(c.redis.url, '');
});

test('config/example.json is valid and documents every field', () => {
  const example = JSON.parse(readFileSync('config/example.json', 'utf8')) as Record<string, unknown>;
  const c = loadConfig({ file: 'config/example.json', env: {} });
  assert.ok(c.ami.secret.length > 0);
  const at = (path: string): unknown =>
    path.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), example);
  for (const path of envVars().values()) assert.ok(at(path) !== undefined, `config/example.json lacks ${path}`);
});

test('env vars AMI_GUARD_<PATH> override the file', () => {
  const c = loadConfig({
    file: file('{"policy":{"maxretry":7}}'),
    env: {
      AMI_GUARD_POLICY_MAXRETRY: '3',
      AMI_GUARD_POLICY_BANTIME: '3d',
      AMI_GUARD_POLICY_IGNOREIP: '10.0.0.0/8, fd00::20',
      AMI_GUARD_AMI_SECRET: 's3cr3t',
    },
  });
  assert.equal(c.policy.maxretry, 3);
  assert.equal(c.policy.bantime, 259_200_000);
  assert.deepEqual(c.policy.ignoreip, ['10.0.0.0/8', 'fd00::20']);
  assert.equal(c.ami.secret, 's3cr3t');
  assert.ok(envVars().has('AMI_GUARD_REDIS_URL'));
});

test('a broken config names the field and never shows a secret', () => {
  const cases: Array<[string, NodeJS.ProcessEnv, RegExp]> = [
    ['{"policy":{"maxretry":0}}', {}, /policy\.maxretry/],
    ['{"policy":{"findtime":"ten"}}', {}, /policy\.findtime/],
    ['{"policy":{"ignoreip":["10.0.0.300"]}}', {}, /policy\.ignoreip.*10\.0\.0\.300/],
    ['{"nft":{"table":"x; flush ruleset"}}', {}, /nft\.table/],
    ['{"redis":{"keyPrefix":"a{b}:"}}', {}, /redis\.keyPrefix/],
    ['{"policy":{"maxretyr":3}}', {}, /policy\.maxretyr/],
    ['{}', { AMI_GUARD_REDIS_URL: 'http://user:hunter2@redis:6379' }, /redis\.url/],
    ['{}', { AMI_GUARD_REDIS_URL: 'redis://user:hunter2@[redis' }, /redis\.url/],
    ['{"ami":{"secret": 12}}', {}, /ami\.secret/],
  ];
  for (const [content, env, re] of cases) {
    assert.throws(
      () => loadConfig({ file: file(content), env }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, re);
        assert.doesNotMatch(err.message, /hunter2/);
        return true;
      },
    );
  }
});

test('invalid JSON is reported by position, without quoting the file', () => {
  const p = file('{"ami": {"secret": "hunter2"\n "x": 1}}');
  assert.throws(
    () => loadConfig({ file: p, env: {} }),
    (err: unknown) => {
      assert.match((err as Error).message, /not valid JSON at line 2/);
      assert.doesNotMatch((err as Error).message, /hunter2/);
      return true;
    },
  );
  assert.throws(() => loadConfig({ file: join(dir, 'missing.json'), env: {} }), /config file .*missing\.json does not exist/);
});

test('the README documents every configuration field and its environment variable', () => {
  const readme = readFileSync('docs/configuration.md', 'utf8');
  for (const [env, path] of envVars()) {
    assert.ok(readme.includes(`| \`${path}\` | \`${env}\` |`), `README lacks the row for ${path}`);
  }
});

test('an unknown field names the nearest known one', () => {
  const cases: Array<[string, RegExp]> = [
    ['{"policy":{"maxretyr":3}}', /unknown field policy\.maxretyr \(did you mean policy\.maxretry\?\)/],
    ['{"maxretry":3}', /unknown field maxretry \(did you mean policy\.maxretry\?\)/],
    ['{"polcy":{"maxretry":3}}', /unknown field polcy \(did you mean policy\?\)/],
    ['{"policy":{"scanner":{"bantime":"1h"}}}', /unknown field policy\.scanner\.bantime \(did you mean policy\.bantime\?\)/],
    ['{"redis":{"URL":"redis://h"}}', /unknown field redis\.URL \(did you mean redis\.url\?\)/],
  ];
  for (const [content, re] of cases) {
    assert.throws(
      () => loadConfig({ file: file(content), env: {} }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, re);
        return true;
      },
    );
  }
  // nothing near: no guess
  assert.throws(
    () => loadConfig({ file: file('{"frobnicate":1}'), env: {} }),
    (err: unknown) => {
      assert.match((err as Error).message, /unknown field frobnicate$/);
      return true;
    },
  );
  // every unknown field at once, so one run shows them all
  assert.throws(
    () => loadConfig({ file: file('{"ami":{"hots":"x"},"policy":{"findtme":"1m"}}'), env: {} }),
    (err: unknown) => {
      assert.match(
        (err as Error).message,
        /ami\.hots \(did you mean ami\.host\?\); unknown field policy\.findtme \(did you mean policy\.findtime\?\)/,
      );
      return true;
    },
  );
});

test('a misspelled event kind in policy.weights is refused with the known kinds', () => {
  for (const [content, env] of [
    ['{"policy":{"weights":{"ChallengeResponseFailled":2}}}', {}],
    ['{}', { AMI_GUARD_POLICY_WEIGHTS: 'ChallengeResponseFailled=2' }],
  ] as const) {
    assert.throws(
      () => loadConfig({ file: file(content), env }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(
          err.message,
          /policy\.weights: "ChallengeResponseFailled" is not a security event kind \(did you mean ChallengeResponseFailed\?\); known kinds: InvalidAccountID, ChallengeResponseFailed, /,
        );
        assert.match(err.message, /ChallengeSent/);
        return true;
      },
    );
  }
  const ok = loadConfig({ env: { AMI_GUARD_POLICY_WEIGHTS: 'RequestBadFormat=2,SessionLimit=0' } });
  assert.deepEqual(ok.policy.weights, { RequestBadFormat: 2, SessionLimit: 0 });
});

test('a missing, unreadable or directory config file is named', () => {
  const missing = join(dir, 'missing.json');
  assert.throws(
    () => loadConfig({ file: missing, env: {} }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.message, `config file ${missing} does not exist`);
      return true;
    },
  );
  assert.throws(
    () => loadConfig({ file: 'no/such/config.json', env: {} }),
    (err: unknown) => {
      assert.equal(
        (err as Error).message,
        `config file no/such/config.json (${join(process.cwd(), 'no/such/config.json')}) does not exist`,
      );
      return true;
    },
  );
  assert.throws(() => loadConfig({ file: dir, env: {} }), /config file .* is a directory, not a JSON file/);
});

test('unknown AMI_GUARD_* variables are ignored with a warning naming the likely one', () => {
  const warnings: string[] = [];
  const c = loadConfig({ env: { AMI_GUARD_POLICY_MAXRETYR: '3', AMI_GUARD_FOO: '1', PATH: '/bin' }, warn: (m) => warnings.push(m) });
  assert.equal(c.policy.maxretry, 5);
  assert.deepEqual(warnings, [
    'AMI_GUARD_POLICY_MAXRETYR is not a configuration variable and is ignored (did you mean AMI_GUARD_POLICY_MAXRETRY?)',
    'AMI_GUARD_FOO is not a configuration variable and is ignored',
  ]);
});

test('redis.password completes redis.url, escaped; a password given twice is refused', () => {
  const c = loadConfig({ env: { AMI_GUARD_REDIS_URL: 'redis://10.0.0.5:6379/0', AMI_GUARD_REDIS_PASSWORD: 'p@ss:w/rd%41' } });
  const url = withCredentials(c.redis.url, c.redis.username, c.redis.password);
  assert.equal(url, 'redis://:p%40ss%3Aw%2Frd%2541@10.0.0.5:6379/0');
  assert.equal(decodeURIComponent(new URL(url).password), 'p@ss:w/rd%41');
  assert.equal(withCredentials('redis://h:1/0', 'amiguard', ''), 'redis://amiguard@h:1/0');
  for (const url of ['redis://:pw@h:6379/0', 'redis://h:6379/0?password=pw']) {
    assert.throws(
      () => loadConfig({ env: { AMI_GUARD_REDIS_URL: url, AMI_GUARD_REDIS_PASSWORD: 'other' } }),
      (err: unknown) => {
        assert.match((err as Error).message, /redis\.password is set and redis\.url carries a password too/);
        assert.doesNotMatch((err as Error).message, /pw|other/);
        return true;
      },
    );
  }
});

test('did you mean: transpositions, case and a field in the wrong section', () => {
  assert.equal(editDistance('maxretyr', 'maxretry'), 1);
  assert.equal(editDistance('MAXRETRY', 'maxretry'), 0);
  assert.equal(nearest('policy.bantme', ['policy.bantime', 'policy.findtime'], '.'), 'policy.bantime');
  assert.equal(nearest('ignoreip', ['policy.maxretry', 'policy.ignoreip'], '.'), 'policy.ignoreip');
  assert.equal(nearest('completely-else', ['policy.maxretry'], '.'), undefined);
  assert.equal(didYouMean('x', []), '');
});
