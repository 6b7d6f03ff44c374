// One typed client per adplane service over a transport, with credentials and typed errors.
import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { AccountService } from "./gen/adplane/v1/account_service_pb.js";
import { ApiKeyService } from "./gen/adplane/v1/api_key_service_pb.js";
import { AuditLogService } from "./gen/adplane/v1/audit_log_service_pb.js";
import { AuthService } from "./gen/adplane/v1/auth_service_pb.js";
import { BusinessManagerService } from "./gen/adplane/v1/business_manager_service_pb.js";
import { ExportService } from "./gen/adplane/v1/export_service_pb.js";
import { PixelService } from "./gen/adplane/v1/pixel_service_pb.js";
import { RequestService } from "./gen/adplane/v1/request_service_pb.js";
import { UserService } from "./gen/adplane/v1/user_service_pb.js";
import { WorkspaceService } from "./gen/adplane/v1/workspace_service_pb.js";
import { type Credentials, credentialsInterceptor, errorInterceptor } from "./credentials.js";

export interface AdplaneClient {
  accounts: Client<typeof AccountService>;
  apiKeys: Client<typeof ApiKeyService>;
  auditLogs: Client<typeof AuditLogService>;
  auth: Client<typeof AuthService>;
  businessManagers: Client<typeof BusinessManagerService>;
  exports: Client<typeof ExportService>;
  pixels: Client<typeof PixelService>;
  requests: Client<typeof RequestService>;
  users: Client<typeof UserService>;
  workspaces: Client<typeof WorkspaceService>;
}

/** Builds a transport from its interceptors (gRPC-Web for browsers, gRPC for Node). */
export type TransportFactory = (options: { baseUrl: string; interceptors: Interceptor[] }) => Transport;

/** The interceptors every adplane transport gets: typed errors outermost, then the credentials. */
export function adplaneInterceptors(credentials?: Credentials): Interceptor[] {
  return credentials === undefined ? [errorInterceptor] : [errorInterceptor, credentialsInterceptor(credentials)];
}

export function createAdplaneClient(transport: Transport): AdplaneClient {
  return {
    accounts: createClient(AccountService, transport),
    apiKeys: createClient(ApiKeyService, transport),
    auditLogs: createClient(AuditLogService, transport),
    auth: createClient(AuthService, transport),
    businessManagers: createClient(BusinessManagerService, transport),
    exports: createClient(ExportService, transport),
    pixels: createClient(PixelService, transport),
    requests: createClient(RequestService, transport),
    users: createClient(UserService, transport),
    workspaces: createClient(WorkspaceService, transport),
  };
}
