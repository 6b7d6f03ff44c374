// @adplane/sdk: the generated messages and services plus a small client layer.
// Transports: "@adplane/sdk/web" (gRPC-Web, browsers) and "@adplane/sdk/node" (gRPC, Node); this
// entry point imports neither.
export { Code, ConnectError } from "@connectrpc/connect";
export { type AdplaneClient, adplaneInterceptors, createAdplaneClient } from "./client.js";
export {
  ApiKeyCredentials,
  type Credentials,
  credentialsInterceptor,
  errorInterceptor,
  REFRESH_AHEAD_MS,
  TokenCredentials,
} from "./credentials.js";
export { AdplaneError, type FieldViolation } from "./errors.js";
export { pages } from "./pages.js";
export { create, enumName, fromJson, fromJsonString, type JsonValue, toJson, toJsonString } from "./printing.js";
export {
  backoffDelay,
  isResumable,
  RESUME_TOKEN_EXPIRED,
  watch,
  type WatchEvent,
  type WatchMethod,
  type WatchOptions,
} from "./watch.js";
export * from "./gen/adplane/v1/account_pb.js";
export * from "./gen/adplane/v1/account_service_pb.js";
export * from "./gen/adplane/v1/api_key_service_pb.js";
export * from "./gen/adplane/v1/audit_log_pb.js";
export * from "./gen/adplane/v1/audit_log_service_pb.js";
export * from "./gen/adplane/v1/auth_service_pb.js";
export * from "./gen/adplane/v1/business_manager_pb.js";
export * from "./gen/adplane/v1/business_manager_service_pb.js";
export * from "./gen/adplane/v1/export_pb.js";
export * from "./gen/adplane/v1/export_service_pb.js";
export * from "./gen/adplane/v1/money_pb.js";
export * from "./gen/adplane/v1/pixel_pb.js";
export * from "./gen/adplane/v1/pixel_service_pb.js";
export * from "./gen/adplane/v1/request_pb.js";
export * from "./gen/adplane/v1/request_service_pb.js";
export * from "./gen/adplane/v1/user_pb.js";
export * from "./gen/adplane/v1/user_service_pb.js";
export * from "./gen/adplane/v1/workspace_member_pb.js";
export * from "./gen/adplane/v1/workspace_pb.js";
export * from "./gen/adplane/v1/workspace_service_pb.js";
