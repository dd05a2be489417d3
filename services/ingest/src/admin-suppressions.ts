import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { Metadata } from '@grpc/grpc-js';
import { suppressionKey, type SuppressionList } from '@relay/bus';
import { ErrorCode, RelayError } from '@relay/core';
import { parseAddress } from '@relay/mail';
import {
  DeleteSuppressionResponseSchema,
  ListSuppressionsResponseSchema,
  SuppressionSchema,
  type DeleteSuppressionRequest,
  type DeleteSuppressionResponse,
  type ListSuppressionsRequest,
  type ListSuppressionsResponse,
} from '@relay/proto';
import { requireAdmin, type Authenticator } from './auth.js';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

type Call<Req> = { metadata: Metadata; request: Req };

/** The address a request names: required when `required`, a valid address, lower-cased. */
function addressOf(raw: string, required: boolean): string | undefined {
  if (!raw) {
    if (required) throw new RelayError(ErrorCode.InvalidArgument, 'address: required');
    return undefined;
  }
  if (raw.length > 320) throw new RelayError(ErrorCode.InvalidArgument, 'address: at most 320 characters');
  const parsed = parseAddress(raw);
  if (typeof parsed === 'string') throw new RelayError(ErrorCode.InvalidArgument, `address: ${parsed}`);
  return parsed.address.toLowerCase();
}

/** AdminService.ListSuppressions and DeleteSuppression, over ingest's watched copy of the bucket. */
export function createSuppressionHandlers(deps: { auth: Authenticator; list: () => SuppressionList | undefined }) {
  const list = () => {
    const l = deps.list();
    if (!l) throw new RelayError(ErrorCode.Unavailable, 'the suppression list is not loaded yet; retry');
    return l;
  };
  return {
    async listSuppressions(call: Call<ListSuppressionsRequest>): Promise<ListSuppressionsResponse> {
      requireAdmin(deps.auth, call.metadata);
      const limit = call.request.limit || DEFAULT_LIMIT;
      if (limit > MAX_LIMIT) throw new RelayError(ErrorCode.InvalidArgument, `limit: at most ${MAX_LIMIT}`);
      const address = addressOf(call.request.address, false);
      const l = list();
      const found = address ? [l.lookup(address)].filter((e) => e !== undefined) : l.entries().sort((a, b) => b.at - a.at);
      return create(ListSuppressionsResponseSchema, {
        total: BigInt(found.length),
        suppressions: found.slice(0, limit).map((e) =>
          create(SuppressionSchema, {
            address: e.address,
            at: timestampFromDate(new Date(e.at)),
            status: e.status,
            diagnostic: e.diagnostic,
            messageId: e.message_id,
            sender: e.sender,
            key: suppressionKey(e.address),
          }),
        ),
      });
    },
    async deleteSuppression(call: Call<DeleteSuppressionRequest>): Promise<DeleteSuppressionResponse> {
      requireAdmin(deps.auth, call.metadata);
      const address = addressOf(call.request.address, true)!;
      const deleted = await list()
        .remove(address)
        .catch((err: unknown) => {
          throw new RelayError(ErrorCode.Unavailable, 'the suppression list is unavailable (broker unreachable); retry', { cause: err });
        });
      return create(DeleteSuppressionResponseSchema, { deleted });
    },
  };
}
