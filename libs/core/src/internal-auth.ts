/**
 * How the relay's services prove themselves to the credentials service. Nothing here derives from
 * the master key, so a service that may not read secrets cannot forge its way to them.
 * - `mtls`: each side presents a certificate signed by the internal CA (PEM text).
 * - `token`: a random bearer token shared by the services that call credentials (the fallback).
 *   `adminToken` (credentials only): ingest's own token for the admin calls, so that ingest's
 *   token fetches no sender's password and the senders' token starts no consent.
 */
export type InternalAuth = { kind: 'mtls'; ca: string; cert: string; key: string } | { kind: 'token'; token: string; adminToken?: string };
