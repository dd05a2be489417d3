/**
 * Set to `1` by a supervisor (`npm run stack`) that starts a service with a pipe on its stdin: the
 * service then stops when that pipe closes, which happens however the supervisor dies.
 */
export const EXIT_WITH_PARENT_ENV = 'RELAY_EXIT_WITH_PARENT';

/**
 * The supervisor's process id, set with EXIT_WITH_PARENT_ENV: a service that looks only after its
 * parent is gone (still starting, or stdin not a pipe) then still sees that it was re-parented.
 */
export const PARENT_PID_ENV = 'RELAY_PARENT_PID';
