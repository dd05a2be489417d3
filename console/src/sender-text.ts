/** The settings of a sender as relay.yaml writes them (the fields the console shows or edits). */
export interface Spec {
  from?: string;
  transport?: string;
  smtp?: { host?: string; port?: number; security?: string; auth?: { type?: string; user?: string; provider?: string; flow?: string } };
  graph?: { tenant_id?: string; client_id?: string; mailbox?: string; flow?: string; client_certificate?: unknown };
  rate?: { preset?: string };
  [key: string]: unknown;
}

export function transportOf(spec: Spec | undefined): string {
  return spec?.transport === 'graph' ? 'Graph API' : `SMTP ${spec?.smtp?.host ?? ''}${spec?.smtp?.port ? `:${spec.smtp.port}` : ''}`;
}

export function authOf(spec: Spec | undefined): string {
  if (spec?.transport === 'graph') {
    const g = spec.graph;
    if (g?.flow === 'refresh_token') return `delegated (${g.mailbox ?? 'the mailbox'} signs in)`;
    return g?.client_certificate ? 'app-only (certificate)' : 'app-only (client secret)';
  }
  const a = spec?.smtp?.auth;
  if (!a || a.type === 'none') return 'none';
  if (a.type === 'oauth2') return `OAuth2 ${a.provider ?? ''} (${a.flow ?? ''})`;
  return `password (${a.user ?? ''})`;
}
