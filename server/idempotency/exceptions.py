from server.exceptions import FieldViolation, InvalidRequestException


class RequestIdReusedException(InvalidRequestException):
    def __init__(self) -> None:
        super().__init__(
            [
                FieldViolation(
                    field="request_id",
                    description="this request_id was already used for a different request",
                    reason="REQUEST_ID_REUSED",
                )
            ],
            reason="REQUEST_ID_REUSED",
        )
