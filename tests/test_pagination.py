"""Cutting a fetched page: limit + 1 rows say whether a next page exists; only the page is converted."""

from server.pagination import PageTokenCodec, paginate

CODEC = PageTokenCodec("a-secret-key-for-page-tokens-only-in-this-test")


def test_the_extra_row_is_not_converted_and_the_token_continues_after_the_last_item() -> None:
    converted: list[int] = []

    def convert(row: int) -> str:
        converted.append(row)
        return f"item-{row}"

    page = paginate(
        [1, 2, 3, 4], convert=convert, limit=3, codec=CODEC, collection="things", filters={}, sort_key=lambda i: [i]
    )
    assert page.items == ["item-1", "item-2", "item-3"]
    assert converted == [1, 2, 3]
    assert CODEC.decode(page.next_page_token, collection="things", filters={}) == ["item-3"]


def test_a_last_page_has_no_token() -> None:
    page = paginate([1, 2], convert=str, limit=3, codec=CODEC, collection="things", filters={}, sort_key=lambda i: [i])
    assert page.items == ["1", "2"]
    assert page.next_page_token == ""
