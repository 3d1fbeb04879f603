import { dataSuite } from './suite.js';
import { s3Target } from './targets.js';

// Every S3 request is a round trip to MinIO: the truncation race is kept short; 8 x 100 stays as the issue asks.
dataSuite(s3Target(), { timeoutMs: 120_000, raceAppends: 15 });
