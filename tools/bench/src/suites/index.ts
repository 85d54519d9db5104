import type { BenchSuite } from '../suite';
import { chainSuite } from './chain';
import { hopsSuite } from './hops';
import { rulesSuite } from './rules';

/** Every suite, in the order `npm run bench` runs them. */
export const suites: readonly BenchSuite[] = [rulesSuite, chainSuite, hopsSuite];
