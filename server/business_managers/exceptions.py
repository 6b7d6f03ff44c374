import uuid

from server.exceptions import AlreadyExistsException, ConflictException, FailedPreconditionException, NotFoundException


class BusinessManagerNotFoundException(NotFoundException):
    reason = "BUSINESS_MANAGER_NOT_FOUND"

    def __init__(self, business_manager_id: uuid.UUID) -> None:
        super().__init__(
            f"business manager {business_manager_id} not found",
            metadata={"business_manager_id": str(business_manager_id)},
        )


class BusinessManagerExistsException(AlreadyExistsException):
    reason = "BUSINESS_MANAGER_EXISTS"

    def __init__(self, meta_business_id: str) -> None:
        super().__init__(
            f"Meta business {meta_business_id} is already on the platform",
            metadata={"meta_business_id": meta_business_id},
        )


class BusinessManagerArchivedException(FailedPreconditionException):
    reason = "BUSINESS_MANAGER_ARCHIVED"

    def __init__(self, business_manager_id: uuid.UUID) -> None:
        super().__init__(
            f"business manager {business_manager_id} is archived and cannot be changed",
            metadata={"business_manager_id": str(business_manager_id)},
        )


class BusinessManagerInUseException(FailedPreconditionException):
    reason = "BUSINESS_MANAGER_IN_USE"

    def __init__(self, business_manager_id: uuid.UUID) -> None:
        super().__init__(
            f"business manager {business_manager_id} still holds ad accounts or pixels; move or remove them first",
            metadata={"business_manager_id": str(business_manager_id)},
        )


class BusinessManagerEtagMismatchException(ConflictException):
    def __init__(self, business_manager_id: uuid.UUID) -> None:
        super().__init__(
            f"business manager {business_manager_id} was changed by someone else; read it again and retry",
            metadata={"business_manager_id": str(business_manager_id)},
        )
