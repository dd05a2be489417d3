/**
 * Set to `1` by a supervisor (`npm run stack`) that starts a service with a pipe on its stdin: the
 * service then stops when that pipe closes, which happens however the supervisor dies.
 */
export const EXIT_WITH_PARENT_ENV = 'RELAY_EXIT_WITH_PARENT';
