import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { HOST_TAG, markAbandoned, parseTempName, tempName, writerState } from '../../src/io/writers';

describe('io/writers', () => {
  it('temp names carry target, stage, host and pid, and parse back', () => {
    for (const kind of ['tmp', 'new', 'old'] as const) {
      const name = tempName('checkpoint-100', kind);
      assert.match(name, new RegExp(`^\\.checkpoint-100\\.${kind}-${HOST_TAG}-${process.pid}-[0-9a-f]{12}$`));
      assert.deepEqual(parseTempName(name), { target: 'checkpoint-100', kind, host: HOST_TAG, pid: process.pid });
    }
    assert.equal(parseTempName(tempName('a.b.safetensors', 'tmp'))?.target, 'a.b.safetensors');
  });

  it("recognizes older tunelab's temps (no writer recorded) and nothing else", () => {
    assert.deepEqual(parseTempName('.final.tmp-AbC123'), { target: 'final', kind: 'tmp' });
    assert.deepEqual(parseTempName('.final.tmp-AbC123.old'), { target: 'final', kind: 'old' });
    assert.deepEqual(parseTempName('.config.json.tmp-4242-0123456789ab'), { target: 'config.json', kind: 'tmp', pid: 4242 });
    for (const other of ['final', '.final', '.git', 'final.tmp-AbC123', '.final.tmp-', '.final.new-xyz', '.final.tmp-1a2b3c4d-12-short']) {
      assert.equal(parseTempName(other), undefined, other);
    }
  });

  it('a writer is dead only on this host with its pid gone, or a temp this process abandoned', () => {
    const gone = spawnSync(process.execPath, ['-e', '']).pid!;
    const at = (host: string, pid: number) => parseTempName(`.m.tmp-${host}-${pid}-0123456789ab`)!;
    assert.equal(writerState(at(HOST_TAG, gone), '/x/.m.tmp-a'), 'dead');
    assert.equal(writerState(at(HOST_TAG, process.ppid), '/x/.m.tmp-b'), 'alive');
    assert.equal(writerState(at(HOST_TAG === 'deadbeef' ? 'feedface' : 'deadbeef', gone), '/x/.m.tmp-c'), 'unknown');
    assert.equal(writerState(parseTempName('.m.tmp-AbC123')!, '/x/.m.tmp-AbC123'), 'unknown');
    assert.equal(writerState(at(HOST_TAG, process.pid), '/x/.m.tmp-d'), 'alive', 'this process, possibly mid-save');
    markAbandoned('/x/.m.tmp-d');
    assert.equal(writerState(at(HOST_TAG, process.pid), '/x/.m.tmp-d'), 'dead');
  });
});
