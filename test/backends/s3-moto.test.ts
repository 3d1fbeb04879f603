/**
 * The conformance suite on moto's S3 server, a second implementation next to
 * MinIO (it is in its own file so that vitest can run it beside the others).
 *
 * moto answers from one Python process, at about 100-200 requests/s on these
 * machines, so two cases are scaled to it: the listing case lists 300 refs
 * (each listed ref costs a PUT and two GETs), and cases may take up to 3
 * minutes, for the 8 x 50 increment race that costs thousands of requests.
 * Nothing is skipped: moto 5.2 passes every case.
 */
import { describe } from 'vitest';
import { conformanceSuite } from '../conformance.js';
import { s3ConformanceTarget, serverOf } from '../support/s3.js';

const moto = serverOf('moto');

describe.skipIf(moto === undefined)(moto ? 'S3 on moto' : 'S3 on moto (not in this run: CAIRN_TEST_S3_SERVERS leaves it out)', () => {
  if (moto !== undefined) conformanceSuite('s3 (moto)', s3ConformanceTarget(moto, { manyRefs: 300, timeoutMs: 180_000 }));
});
