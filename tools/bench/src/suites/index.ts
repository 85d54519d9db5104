import type { BenchSuite } from '../suite';
import { rulesSuite } from './rules';

/** Every suite, in the order `npm run bench` runs them. Add new ones (e.g. chain throughput) here. */
export const suites: readonly BenchSuite[] = [rulesSuite];
