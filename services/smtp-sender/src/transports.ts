import { createHash } from 'node:crypto';
import nodemailer, { type Transporter } from 'nodemailer';
import type SMTPPool from 'nodemailer/lib/smtp-pool/index.js';
import { smtpConnectionOptions, type SenderConfig, type SmtpConfig } from '@relay/config';
import { GetSmtpAuthResponse_Kind as Kind, type GetSmtpAuthResponse } from '@relay/proto';

/** A sender's pooled nodemailer SMTP transport. */
export type Pool = Transporter<SMTPPool.SentMessageInfo, SMTPPool.Options>;

/** nodemailer options for a sender's SMTP settings and its current credentials. */
export function transportOptions(smtp: SmtpConfig, auth: GetSmtpAuthResponse): SMTPPool.Options {
  const opts: SMTPPool.Options = {
    ...smtpConnectionOptions(smtp),
    pool: true,
    maxConnections: smtp.pool.maxConnections,
    maxMessages: smtp.pool.maxMessages,
  };
  if (auth.kind === Kind.PASSWORD) opts.auth = { user: auth.user, pass: auth.password };
  if (auth.kind === Kind.XOAUTH2) opts.auth = { type: 'OAuth2', user: auth.user, accessToken: auth.accessToken };
  return opts;
}

/**
 * One pooled nodemailer transport per sender, rebuilt when the sender's credentials change
 * (a new token, a rotated password); the old pool finishes what it has and closes.
 */
export class TransportPool {
  readonly #pools = new Map<string, { key: string; pool: Pool }>();

  get(sender: SenderConfig, auth: GetSmtpAuthResponse): Pool {
    // The settings too: a sender changed through the registry gets a new pool.
    const key = createHash('sha256')
      .update(`${auth.kind}\0${auth.user}\0${auth.password}\0${auth.accessToken}\0${JSON.stringify(sender.smtp)}`)
      .digest('hex');
    const current = this.#pools.get(sender.id);
    if (current?.key === key) return current.pool;
    if (current) retire(current.pool);
    const pool = nodemailer.createTransport(transportOptions(sender.smtp!, auth)) as Pool;
    this.#pools.set(sender.id, { key, pool });
    return pool;
  }

  closeAll() {
    for (const { pool } of this.#pools.values()) pool.close();
    this.#pools.clear();
  }
}

function retire(pool: Pool) {
  if (pool.isIdle()) return pool.close();
  pool.once('idle', () => pool.close());
  setTimeout(() => pool.close(), 120_000).unref();
}
