//! Thin typed wrappers over the generated stubs, one method per unary RPC: the request message in, the response
//! message out, with the auth token attached and one endpoint failover on transport errors (calls clientv3 does
//! not repeat are sent again only if they never reached a server). The request types are the wire types of
//! cairn-api, so every field etcd defines is reachable.

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

use crate::{Client, Result, Retry};

/// Defines `Client::$name(req) -> Result<$resp>` calling `$stub::$rpc`.
macro_rules! unary {
    ($( $(#[$doc:meta])* $name:ident: $retry:ident $stub:ident::$rpc:ident($req:ty) -> $resp:ty; )*) => {
        impl Client {
            $(
                $(#[$doc])*
                pub async fn $name(&self, req: $req) -> Result<$resp> {
                    self.with_failover(Retry::$retry, |ch| {
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
    lease_grant: Repeatable LeaseClient::lease_grant(LeaseGrantRequest) -> LeaseGrantResponse;
    lease_revoke: Repeatable LeaseClient::lease_revoke(LeaseRevokeRequest) -> LeaseRevokeResponse;
    lease_time_to_live: Repeatable LeaseClient::lease_time_to_live(LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse;
    lease_leases: Repeatable LeaseClient::lease_leases(LeaseLeasesRequest) -> LeaseLeasesResponse;

    member_add: Once ClusterClient::member_add(MemberAddRequest) -> MemberAddResponse;
    member_remove: Once ClusterClient::member_remove(MemberRemoveRequest) -> MemberRemoveResponse;
    member_update: Once ClusterClient::member_update(MemberUpdateRequest) -> MemberUpdateResponse;
    member_promote: Once ClusterClient::member_promote(MemberPromoteRequest) -> MemberPromoteResponse;

    /// Lists, activates or deactivates alarms, as the request's action says.
    alarm: Repeatable MaintenanceClient::alarm(AlarmRequest) -> AlarmResponse;
    defragment: Once MaintenanceClient::defragment(DefragmentRequest) -> DefragmentResponse;
    hash_kv: Repeatable MaintenanceClient::hash_kv(HashKvRequest) -> HashKvResponse;
    move_leader: Repeatable MaintenanceClient::move_leader(MoveLeaderRequest) -> MoveLeaderResponse;

    auth_enable: Repeatable AuthClient::auth_enable(AuthEnableRequest) -> AuthEnableResponse;
    auth_disable: Repeatable AuthClient::auth_disable(AuthDisableRequest) -> AuthDisableResponse;
    auth_status: Repeatable AuthClient::auth_status(AuthStatusRequest) -> AuthStatusResponse;
    user_add: Once AuthClient::user_add(AuthUserAddRequest) -> AuthUserAddResponse;
    user_get: Repeatable AuthClient::user_get(AuthUserGetRequest) -> AuthUserGetResponse;
    user_list: Repeatable AuthClient::user_list(AuthUserListRequest) -> AuthUserListResponse;
    user_delete: Once AuthClient::user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse;
    user_change_password:
        Once AuthClient::user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse;
    user_grant_role: Once AuthClient::user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse;
    user_revoke_role: Once AuthClient::user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse;
    role_add: Once AuthClient::role_add(AuthRoleAddRequest) -> AuthRoleAddResponse;
    role_get: Repeatable AuthClient::role_get(AuthRoleGetRequest) -> AuthRoleGetResponse;
    role_list: Repeatable AuthClient::role_list(AuthRoleListRequest) -> AuthRoleListResponse;
    role_delete: Once AuthClient::role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse;
    role_grant_permission:
        Once AuthClient::role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse;
    role_revoke_permission:
        Once AuthClient::role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse;

    /// Blocks until the lock named in the request is held by its lease.
    lock: Once LockClient::lock(LockRequest) -> LockResponse;
    unlock: Once LockClient::unlock(UnlockRequest) -> UnlockResponse;

    /// Blocks until the lease becomes leader of the election.
    campaign: Once ElectionClient::campaign(CampaignRequest) -> CampaignResponse;
    proclaim: Once ElectionClient::proclaim(ProclaimRequest) -> ProclaimResponse;
    leader: Repeatable ElectionClient::leader(LeaderRequest) -> LeaderResponse;
    resign: Once ElectionClient::resign(ResignRequest) -> ResignResponse;
}
