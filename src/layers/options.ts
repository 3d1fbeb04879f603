/**
 * The layers' option checks, now in `internal/options.ts` (one message style
 * for all of Cairn). Re-exported here until every layer imports them from
 * there.
 *
 * @module
 */
export { integerOption, numberOption, storeOption } from '../internal/options.js';
