import { create } from '@bufbuild/protobuf';
import type { SenderConfig } from '@relay/config';
import { ErrorCode, RelayError } from '@relay/core';
import { GetSmtpAuthResponseSchema, GetSmtpAuthResponse_Kind as Kind, type GetSmtpAuthResponse } from '@relay/proto';

/** The credentials an SMTP sender presents to its server. */
export function smtpAuthFor(sender: SenderConfig | undefined, id: string): GetSmtpAuthResponse {
  if (!sender) throw new RelayError(ErrorCode.NotFound, `sender "${id}" is not configured`);
  if (!sender.smtp) throw new RelayError(ErrorCode.FailedPrecondition, `sender "${id}" does not use SMTP`);
  const auth = sender.smtp.auth;
  switch (auth.type) {
    case 'none':
      return create(GetSmtpAuthResponseSchema, { kind: Kind.NONE });
    case 'password':
      return create(GetSmtpAuthResponseSchema, { kind: Kind.PASSWORD, user: auth.user, password: auth.password.reveal() });
    case 'oauth2':
      throw new RelayError(ErrorCode.FailedPrecondition, `sender "${id}": OAuth2 (XOAUTH2) tokens are not available in this version of the relay`);
  }
}
