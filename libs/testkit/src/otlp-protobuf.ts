import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import type { ReceivedSpan } from './otlp-receiver.js';

/**
 * Just enough of the OTLP protobuf schema (opentelemetry/proto/trace/v1/trace.proto and
 * collector/trace/v1/trace_service.proto) to read the spans of an ExportTraceServiceRequest, as
 * the http/protobuf and grpc exporters send it. Unknown fields are skipped.
 */
type Visit = (fieldNo: number, wireType: WireType, r: BinaryReader) => boolean;

function walk(bytes: Uint8Array, visit: Visit): void {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (!visit(no, wt, r)) r.skip(wt, no);
  }
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function anyValue(bytes: Uint8Array): string | number | boolean | undefined {
  let v: string | number | boolean | undefined;
  walk(bytes, (no, wt, r) => {
    if (no === 1 && wt === WireType.LengthDelimited) v = r.string();
    else if (no === 2 && wt === WireType.Varint) v = r.bool();
    else if (no === 3 && wt === WireType.Varint) v = Number(r.int64());
    else if (no === 4 && wt === WireType.Bit64) v = r.double();
    else return false;
    return true;
  });
  return v;
}

function keyValue(bytes: Uint8Array, into: Record<string, string | number | boolean>): void {
  let key = '';
  let value: string | number | boolean | undefined;
  walk(bytes, (no, wt, r) => {
    if (wt !== WireType.LengthDelimited) return false;
    if (no === 1) key = r.string();
    else if (no === 2) value = anyValue(r.bytes());
    else return false;
    return true;
  });
  if (key && value !== undefined) into[key] = value;
}

function span(bytes: Uint8Array, service: string): ReceivedSpan {
  const s: ReceivedSpan = { service, traceId: '', spanId: '', parentSpanId: '', name: '', kind: 0, attributes: {}, statusCode: 0 };
  walk(bytes, (no, wt, r) => {
    if (no === 1 && wt === WireType.LengthDelimited) s.traceId = hex(r.bytes());
    else if (no === 2 && wt === WireType.LengthDelimited) s.spanId = hex(r.bytes());
    else if (no === 4 && wt === WireType.LengthDelimited) s.parentSpanId = hex(r.bytes());
    else if (no === 5 && wt === WireType.LengthDelimited) s.name = r.string();
    else if (no === 6 && wt === WireType.Varint) s.kind = r.int32();
    else if (no === 9 && wt === WireType.LengthDelimited) keyValue(r.bytes(), s.attributes);
    else if (no === 15 && wt === WireType.LengthDelimited) {
      walk(r.bytes(), (sn, swt, sr) => {
        if (sn !== 3 || swt !== WireType.Varint) return false;
        s.statusCode = sr.int32();
        return true;
      });
    } else return false;
    return true;
  });
  return s;
}

/** The spans of an OTLP ExportTraceServiceRequest in protobuf encoding. */
export function decodeTraceRequest(bytes: Uint8Array): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  walk(bytes, (no, wt, r) => {
    if (no !== 1 || wt !== WireType.LengthDelimited) return false;
    // ResourceSpans: resource = 1, scope_spans = 2 (each: scope = 1, spans = 2).
    const resourceAttrs: Record<string, string | number | boolean> = {};
    const scopeSpans: Uint8Array[] = [];
    walk(r.bytes(), (rn, rwt, rr) => {
      if (rwt !== WireType.LengthDelimited) return false;
      if (rn === 1) {
        walk(rr.bytes(), (an, awt, ar) => {
          if (an !== 1 || awt !== WireType.LengthDelimited) return false;
          keyValue(ar.bytes(), resourceAttrs);
          return true;
        });
      } else if (rn === 2) scopeSpans.push(rr.bytes());
      else return false;
      return true;
    });
    const service = String(resourceAttrs['service.name'] ?? '');
    for (const ss of scopeSpans) {
      walk(ss, (sn, swt, sr) => {
        if (sn !== 2 || swt !== WireType.LengthDelimited) return false;
        out.push(span(sr.bytes(), service));
        return true;
      });
    }
    return true;
  });
  return out;
}
