import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { SenderConfig } from '@relay/config';
import { ErrorCode, RelayError } from '@relay/core';
import { GetSmtpAuthResponseSchema, GetSmtpAuthResponse_Kind as Kind, type GetSmtpAuthResponse } from '@relay/proto';
import { imapRefusal, smtpTokenAuth } from './imap-scope.js';
import type { OAuthTokens } from './oauth-tokens.js';

/** The credentials an SMTP sender presents to its server. */
export async function smtpAuthFor(
  sender: SenderConfig | undefined,
  id: string,
  tokens: OAuthTokens,
  opts: { tokenRejected?: boolean } = {},
): Promise<GetSmtpAuthResponse> {
  if (!sender) throw new RelayError(ErrorCode.NotFound, `sender "${id}" is not configured`);
  if (!sender.smtp) throw new RelayError(ErrorCode.FailedPrecondition, `sender "${id}" does not use SMTP`);
  const auth = sender.smtp.auth;
  switch (auth.type) {
    case 'none':
      return create(GetSmtpAuthResponseSchema, { kind: Kind.NONE });
    case 'password':
      return create(GetSmtpAuthResponseSchema, { kind: Kind.PASSWORD, user: auth.user, password: auth.password.reveal() });
    case 'oauth2': {
      const token = await tokens.get(id, smtpTokenAuth(sender) ?? auth, { rejected: opts.tokenRejected ?? false });
      return create(GetSmtpAuthResponseSchema, {
        kind: Kind.XOAUTH2,
        user: auth.user,
        accessToken: token.accessToken,
        expiresAt: timestampFromDate(new Date(token.expiresAt)),
        imapRefusal: imapRefusal(sender, token.scopes),
      });
    }
  }
}
