// Every item of a keyset-paginated List RPC, one page at a time.

interface PagedRequest {
  pageToken?: string;
}

interface PagedResponse {
  nextPageToken: string;
}

/** Calls `list` with `request`, then with each `next_page_token`, yielding the `items` of every page. */
export async function* pages<Req extends PagedRequest, Res extends PagedResponse, Item>(
  list: (request: Req) => Promise<Res>,
  request: Req,
  items: (response: Res) => readonly Item[],
): AsyncGenerator<Item, void, undefined> {
  let pageToken = request.pageToken ?? "";
  for (;;) {
    const response = await list({ ...request, pageToken });
    yield* items(response);
    if (!response.nextPageToken) {
      return;
    }
    pageToken = response.nextPageToken;
  }
}
