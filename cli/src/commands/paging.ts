/** Most pages any listing reads (1000 per page: a million entries). */
const MAX_PAGES = 1_000;

/** Reads every page of a paged list call, following next_page_token. */
export async function listAll<Res extends { nextPageToken: string }, Item>(
  page: (pageToken: string) => Promise<Res>,
  items: (res: Res) => Item[],
  limit = Number.POSITIVE_INFINITY,
): Promise<Item[]> {
  const all: Item[] = [];
  let token = '';
  for (let i = 0; i < MAX_PAGES; i++) {
    const res = await page(token);
    all.push(...items(res));
    token = res.nextPageToken;
    if (!token || all.length >= limit) break;
  }
  return all.slice(0, limit);
}
