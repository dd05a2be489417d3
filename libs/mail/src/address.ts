/**
 * Mail address checks after RFC 5322 (syntax) and RFC 5321 (lengths): a bare addr-spec or
 * `Display Name <addr-spec>`, dot-atom or quoted local part, host name or address literal domain.
 * UTF-8 in local part and domain is accepted (RFC 6531, SMTPUTF8).
 */
const ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~\\-\\u0080-\\uFFFF]";
const DOT_ATOM = new RegExp(`^${ATEXT}+(?:\\.${ATEXT}+)*$`, 'u');
const QUOTED = /^"(?:[^"\\\r\n]|\\[^\r\n])*"$/u;
const LABEL = /^(?!-)[A-Za-z0-9\-\u0080-\uFFFF]{1,63}(?<!-)$/u;
const IPV4_LITERAL = /^\[(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\]$/;
const IPV6_LITERAL = /^\[IPv6:[0-9A-Fa-f:.]+\]$/;

export interface ParsedAddress {
  /** The addr-spec, e.g. no-reply@campus.example. */
  address: string;
  /** The display name, without quotes; empty when there is none. */
  name: string;
}

/** Parses one address; returns a reason string when it is not valid. */
export function parseAddress(input: string): ParsedAddress | string {
  if (/[\r\n]/.test(input)) return 'must not contain line breaks';
  const value = input.trim();
  if (value === '') return 'must not be empty';
  let name = '';
  let spec = value;
  const angle = /^(.*?)\s*<([^<>]*)>$/su.exec(value);
  if (angle) {
    name = angle[1]!.trim();
    spec = angle[2]!.trim();
    if (name.startsWith('"')) {
      if (!QUOTED.test(name)) return 'has an unterminated quoted display name';
      name = name.slice(1, -1).replace(/\\(.)/g, '$1');
    } else if (/[<>@",;:]/.test(name)) {
      return 'has a display name with special characters; put it in double quotes';
    }
  } else if (/[<>]/.test(value)) {
    return 'has unbalanced angle brackets';
  }
  const reason = checkAddrSpec(spec);
  return reason ?? { address: spec, name };
}

function checkAddrSpec(spec: string): string | undefined {
  const at = spec.lastIndexOf('@');
  if (at <= 0 || at === spec.length - 1) return `"${spec}" is not an email address (expected local@domain)`;
  const local = spec.slice(0, at);
  const domain = spec.slice(at + 1);
  if (Buffer.byteLength(local) > 64) return 'has a local part longer than 64 octets';
  if (Buffer.byteLength(spec) > 254) return 'is longer than 254 octets';
  if (!DOT_ATOM.test(local) && !QUOTED.test(local)) return `has an invalid local part "${local}"`;
  if (domain.startsWith('[')) {
    if (!IPV4_LITERAL.test(domain) && !IPV6_LITERAL.test(domain)) return `has an invalid address literal "${domain}"`;
    return undefined;
  }
  if (Buffer.byteLength(domain) > 253) return 'has a domain longer than 253 octets';
  const labels = domain.split('.');
  if (!labels.every((l) => LABEL.test(l))) return `has an invalid domain "${domain}"`;
  return undefined;
}
