import { randomBytes } from 'node:crypto';

/** One message in a fake mailbox folder. */
interface StoredMessage {
  id: string;
  raw: Buffer;
}

interface Folder {
  id: string;
  displayName: string;
  messages: StoredMessage[];
}

export interface FolderAnswer {
  status: number;
  json?: unknown;
  /** A body sent as it is (a message's MIME, `$value`). */
  raw?: Buffer;
}

/** Thrown for an answer Graph gives as an error. */
export type FolderError = (status: number, code: string, message: string) => Error;

/**
 * The mail folders of the Graph fake's mailboxes: enough of Graph's `mailFolders` and `messages`
 * API to read a folder and move what was read (Mail.ReadWrite): folder by well-known name or id,
 * by `$filter=displayName eq '...'`, create; a folder's messages (`$top`, `$skip`, and the
 * message size as the extended property `Integer 0x0E08`); a message's MIME (`$value`); move.
 */
export function createFakeFolders(fail: FolderError) {
  const boxes = new Map<string, Folder[]>();
  const foldersOf = (mailbox: string) => {
    let f = boxes.get(mailbox);
    if (!f) {
      f = [{ id: 'inbox-id', displayName: 'Inbox', messages: [] }];
      boxes.set(mailbox, f);
    }
    return f;
  };
  const find = (mailbox: string, idOrName: string) => {
    const folders = foldersOf(mailbox);
    const f = idOrName.toLowerCase() === 'inbox' ? folders[0] : folders.find((x) => x.id === idOrName);
    if (!f) throw fail(404, 'ErrorItemNotFound', 'The specified folder could not be found in the store.');
    return f;
  };
  const folderJson = (f: Folder) => ({ id: f.id, displayName: f.displayName, totalItemCount: f.messages.length });

  return {
    /** Puts a message into a folder (made when missing; `Inbox` by default); returns its id. */
    deliver(mailbox: string, raw: Buffer | string, folder = 'Inbox'): string {
      const folders = foldersOf(mailbox.toLowerCase());
      let f = folders.find((x) => x.displayName.toLowerCase() === folder.toLowerCase());
      if (!f) {
        f = { id: randomBytes(8).toString('hex'), displayName: folder, messages: [] };
        folders.push(f);
      }
      const id = randomBytes(12).toString('base64url');
      f.messages.push({ id, raw: Buffer.from(raw) });
      return id;
    },
    /** The MIME of every message in a folder (by display name); empty when there is no such folder. */
    messages(mailbox: string, folder: string): Buffer[] {
      return (foldersOf(mailbox.toLowerCase()).find((x) => x.displayName.toLowerCase() === folder.toLowerCase())?.messages ?? []).map((m) => m.raw);
    },
    /** Answers a mail folder request, or undefined when the path is not one. */
    route(method: string, path: string, url: URL, mailbox: string, body: Buffer): FolderAnswer | undefined {
      const m = /^\/v1\.0\/(?:users\/[^/]+|me)\/(?:mailFolders(?:\/([^/]+)(?:\/(messages))?)?|messages\/([^/]+)\/(\$value|move))$/.exec(path);
      if (!m) return undefined;
      const [, folderId, messages, messageId, action] = m;
      const folders = foldersOf(mailbox);
      if (messageId) {
        const from = folders.find((f) => f.messages.some((x) => x.id === messageId));
        const msg = from?.messages.find((x) => x.id === messageId);
        if (!from || !msg) throw fail(404, 'ErrorItemNotFound', 'The specified object was not found in the store.');
        if (action === '$value' && method === 'GET') return { status: 200, raw: msg.raw };
        if (action === 'move' && method === 'POST') {
          const { destinationId } = JSON.parse(body.toString('utf8') || '{}') as { destinationId?: string };
          const to = find(mailbox, destinationId ?? '');
          from.messages = from.messages.filter((x) => x !== msg);
          // Graph gives a moved message a new id.
          const moved = { id: randomBytes(12).toString('base64url'), raw: msg.raw };
          to.messages.push(moved);
          return { status: 201, json: { id: moved.id } };
        }
        throw fail(405, 'ErrorInvalidRequest', `${method} is not supported on ${path}`);
      }
      if (!folderId && method === 'GET') {
        const eq = /^displayName eq '(.*)'$/.exec(url.searchParams.get('$filter') ?? '');
        const all = eq ? folders.filter((f) => f.displayName === eq[1]!.replaceAll("''", "'")) : folders;
        return { status: 200, json: { value: all.map(folderJson) } };
      }
      if (!folderId && method === 'POST') {
        const { displayName } = JSON.parse(body.toString('utf8') || '{}') as { displayName?: string };
        if (!displayName) throw fail(400, 'ErrorInvalidRequest', 'displayName is required.');
        if (folders.some((f) => f.displayName === displayName)) throw fail(409, 'ErrorFolderExists', 'A folder with the specified name already exists.');
        const f = { id: randomBytes(8).toString('hex'), displayName, messages: [] };
        folders.push(f);
        return { status: 201, json: folderJson(f) };
      }
      const f = find(mailbox, folderId!);
      if (!messages && method === 'GET') return { status: 200, json: folderJson(f) };
      if (messages && method === 'GET') {
        const top = Number(url.searchParams.get('$top') ?? '10');
        const skip = Number(url.searchParams.get('$skip') ?? '0');
        const page = f.messages.slice(skip, skip + top);
        const size = (url.searchParams.get('$expand') ?? '').includes('0x0E08');
        const next = new URL(url);
        next.searchParams.set('$skip', String(skip + top));
        return {
          status: 200,
          json: {
            value: page.map((x) => ({
              id: x.id,
              ...(size ? { singleValueExtendedProperties: [{ id: 'Integer 0xe08', value: String(x.raw.length) }] } : {}),
            })),
            ...(skip + top < f.messages.length ? { '@odata.nextLink': next.toString() } : {}),
          },
        };
      }
      throw fail(405, 'ErrorInvalidRequest', `${method} is not supported on ${path}`);
    },
  };
}
