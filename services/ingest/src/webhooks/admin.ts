import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { Metadata } from '@grpc/grpc-js';
import type { RelayConfig } from '@relay/config';
import { ErrorCode, RelayError } from '@relay/core';
import {
  ListWebhookDeliveriesResponseSchema,
  WebhookDeliverySchema,
  WebhookEndpointSchema,
  type ListWebhookDeliveriesRequest,
  type ListWebhookDeliveriesResponse,
} from '@relay/proto';
import { requireAdmin, type Authenticator } from '../auth.js';
import type { Webhooks } from './webhooks.js';

const DEFAULT_LIMIT = 20;

/** AdminService.ListWebhookDeliveries: a client's endpoints, what waits for each and its last attempts. */
export function createWebhookDeliveriesHandler(deps: { auth: Authenticator; config: () => RelayConfig; webhooks: Webhooks }) {
  return async (call: { metadata: Metadata; request: ListWebhookDeliveriesRequest }): Promise<ListWebhookDeliveriesResponse> => {
    requireAdmin(deps.auth, call.metadata);
    const name = call.request.client;
    if (!name) throw new RelayError(ErrorCode.InvalidArgument, 'client: required');
    if (name.length > 256) throw new RelayError(ErrorCode.InvalidArgument, 'client: at most 256 characters');
    const client = deps.config().clients.find((c) => c.name === name);
    if (!client) throw new RelayError(ErrorCode.NotFound, `client "${name}" does not exist`);
    const endpoints = await deps.webhooks.deliveries(client, call.request.limit || DEFAULT_LIMIT);
    return create(ListWebhookDeliveriesResponseSchema, {
      endpoints: endpoints.map((e) =>
        create(WebhookEndpointSchema, {
          url: e.url,
          events: e.events,
          pending: BigInt(e.pending),
          heldReason: e.held,
          deliveries: e.deliveries.map((d) =>
            create(WebhookDeliverySchema, {
              at: timestampFromDate(new Date(d.at)),
              eventId: d.event_id,
              eventType: d.event_type,
              messageId: d.message_id,
              attempt: d.attempt,
              statusCode: d.status_code,
              error: d.error,
              response: d.response,
              durationMs: d.duration_ms,
            }),
          ),
        }),
      ),
    });
  };
}
