//! Thin typed wrappers over the generated stubs, one method per unary RPC: the request message in, the response
//! message out, with the auth token attached and one endpoint failover on transport errors. The request types are
//! the wire types of cairn-api, so every field etcd defines is reachable.

use cairn_api::etcdserverpb::auth_client::AuthClient;
use cairn_api::etcdserverpb::cluster_client::ClusterClient;
use cairn_api::etcdserverpb::lease_client::LeaseClient;
use cairn_api::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_api::etcdserverpb::{
    AlarmRequest, AlarmResponse, AuthDisableRequest, AuthDisableResponse, AuthEnableRequest,
    AuthEnableResponse, AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest,
    AuthRoleDeleteResponse, AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse, AuthRoleListRequest, AuthRoleListResponse,
    AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthStatusRequest, AuthStatusResponse,
    AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest, AuthUserChangePasswordResponse,
    AuthUserDeleteRequest, AuthUserDeleteResponse, AuthUserGetRequest, AuthUserGetResponse,
    AuthUserGrantRoleRequest, AuthUserGrantRoleResponse, AuthUserListRequest, AuthUserListResponse,
    AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse, DefragmentRequest, DefragmentResponse,
    HashKvRequest, HashKvResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse, MemberAddRequest, MemberAddResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse, MoveLeaderRequest, MoveLeaderResponse,
};
use cairn_api::v3electionpb::election_client::ElectionClient;
use cairn_api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use cairn_api::v3lockpb::lock_client::LockClient;
use cairn_api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

use crate::{Client, Result};

/// Defines `Client::$name(req) -> Result<$resp>` calling `$stub::$rpc`.
macro_rules! unary {
    ($( $(#[$doc:meta])* $name:ident: $stub:ident::$rpc:ident($req:ty) -> $resp:ty; )*) => {
        impl Client {
            $(
                $(#[$doc])*
                pub async fn $name(&self, req: $req) -> Result<$resp> {
                    self.with_failover(|ch| {
                        let r = self.request(req.clone());
                        async move { $stub::new(ch).$rpc(r).await.map(tonic::Response::into_inner) }
                    })
                    .await
                }
            )*
        }
    };
}

unary! {
    /// Grants a lease (`ID` 0: the server picks one).
    lease_grant: LeaseClient::lease_grant(LeaseGrantRequest) -> LeaseGrantResponse;
    lease_revoke: LeaseClient::lease_revoke(LeaseRevokeRequest) -> LeaseRevokeResponse;
    lease_time_to_live: LeaseClient::lease_time_to_live(LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse;
    lease_leases: LeaseClient::lease_leases(LeaseLeasesRequest) -> LeaseLeasesResponse;

    member_add: ClusterClient::member_add(MemberAddRequest) -> MemberAddResponse;
    member_remove: ClusterClient::member_remove(MemberRemoveRequest) -> MemberRemoveResponse;
    member_update: ClusterClient::member_update(MemberUpdateRequest) -> MemberUpdateResponse;
    member_promote: ClusterClient::member_promote(MemberPromoteRequest) -> MemberPromoteResponse;

    /// Lists, activates or deactivates alarms, as the request's action says.
    alarm: MaintenanceClient::alarm(AlarmRequest) -> AlarmResponse;
    defragment: MaintenanceClient::defragment(DefragmentRequest) -> DefragmentResponse;
    hash_kv: MaintenanceClient::hash_kv(HashKvRequest) -> HashKvResponse;
    move_leader: MaintenanceClient::move_leader(MoveLeaderRequest) -> MoveLeaderResponse;

    auth_enable: AuthClient::auth_enable(AuthEnableRequest) -> AuthEnableResponse;
    auth_disable: AuthClient::auth_disable(AuthDisableRequest) -> AuthDisableResponse;
    auth_status: AuthClient::auth_status(AuthStatusRequest) -> AuthStatusResponse;
    user_add: AuthClient::user_add(AuthUserAddRequest) -> AuthUserAddResponse;
    user_get: AuthClient::user_get(AuthUserGetRequest) -> AuthUserGetResponse;
    user_list: AuthClient::user_list(AuthUserListRequest) -> AuthUserListResponse;
    user_delete: AuthClient::user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse;
    user_change_password:
        AuthClient::user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse;
    user_grant_role: AuthClient::user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse;
    user_revoke_role: AuthClient::user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse;
    role_add: AuthClient::role_add(AuthRoleAddRequest) -> AuthRoleAddResponse;
    role_get: AuthClient::role_get(AuthRoleGetRequest) -> AuthRoleGetResponse;
    role_list: AuthClient::role_list(AuthRoleListRequest) -> AuthRoleListResponse;
    role_delete: AuthClient::role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse;
    role_grant_permission:
        AuthClient::role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse;
    role_revoke_permission:
        AuthClient::role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse;

    /// Blocks until the lock named in the request is held by its lease.
    lock: LockClient::lock(LockRequest) -> LockResponse;
    unlock: LockClient::unlock(UnlockRequest) -> UnlockResponse;

    /// Blocks until the lease becomes leader of the election.
    campaign: ElectionClient::campaign(CampaignRequest) -> CampaignResponse;
    proclaim: ElectionClient::proclaim(ProclaimRequest) -> ProclaimResponse;
    leader: ElectionClient::leader(LeaderRequest) -> LeaderResponse;
    resign: ElectionClient::resign(ResignRequest) -> ResignResponse;
}
