// Printing messages as the REST surface does: proto3 JSON, enum values by their proto names.
import type { DescEnum } from "@bufbuild/protobuf";

export { create, fromJson, fromJsonString, toJson, toJsonString } from "@bufbuild/protobuf";
export type { JsonValue } from "@bufbuild/protobuf";

/** The proto name of an enum value, e.g. `enumName(RequestStatusSchema, request.status)` is
 * `"REQUEST_STATUS_APPROVED"`; a value this SDK does not know prints as its number. */
export function enumName(schema: DescEnum, value: number): string {
  return schema.value[value]?.name ?? String(value);
}
