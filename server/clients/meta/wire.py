"""Shapes of Graph API response bodies that are not domain objects (pages, batches, errors)."""

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class GraphErrorDetail(_Wire):
    message: str = "unknown Graph API error"
    type: str | None = None
    code: int | None = None
    error_subcode: int | None = None
    fbtrace_id: str | None = None
    is_transient: bool = False


class GraphErrorBody(_Wire):
    error: GraphErrorDetail


class Cursors(_Wire):
    before: str | None = None
    after: str | None = None


class Paging(_Wire):
    cursors: Cursors | None = None
    next: str | None = None


class Page(_Wire):
    data: list[dict[str, object]]
    paging: Paging | None = None

    def next_cursor(self) -> str | None:
        """The cursor of the next page; None on the last one (Graph omits `next` there)."""
        if self.paging is None or self.paging.next is None or self.paging.cursors is None:
            return None
        return self.paging.cursors.after


class BatchHeader(_Wire):
    name: str
    value: str


class BatchItemResponse(_Wire):
    code: int
    headers: list[BatchHeader] = Field(default_factory=list)
    body: str = ""

    def header_map(self) -> dict[str, str]:
        return {header.name: header.value for header in self.headers}


class CreatedObject(_Wire):
    id: str


class SuccessResponse(_Wire):
    success: bool
