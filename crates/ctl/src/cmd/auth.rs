//! auth enable|disable, user ..., role ...: etcdctl's auth_command.go, user_command.go, role_command.go.

use cairn_api::authpb::{permission::Type as PermType, Permission};
use cairn_api::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest, AuthRoleGetRequest,
    AuthRoleGetResponse, AuthRoleGrantPermissionRequest, AuthRoleListRequest,
    AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserChangePasswordRequest,
    AuthUserDeleteRequest, AuthUserGetRequest, AuthUserGrantRoleRequest, AuthUserListRequest,
    AuthUserRevokeRoleRequest, ResponseHeader,
};
use cairn_api::EtcdError;
use cairn_client::options::prefix_end;
use cairn_client::ClientError;

use crate::cli::{AuthCommand, PasswdArgs, PermArgs, RoleCommand, UserAddArgs, UserCommand, UserGetArgs};
use crate::ctx::Ctx;
use crate::error::{CtlError, Result};
use crate::gofmt::quote;
use crate::gojson::{self, Obj};
use crate::printer::{json, Format};

fn one<'a>(args: &'a [String], what: &str) -> Result<&'a str> {
    match args {
        [a] => Ok(a),
        _ => Err(CtlError::bad_args(what.to_owned())),
    }
}

fn none(args: &[String], what: &str) -> Result<()> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(CtlError::bad_args(what.to_owned()))
    }
}

pub async fn auth(ctx: &mut Ctx, c: AuthCommand) -> Result<()> {
    let client = match &c {
        AuthCommand::Enable(a) => {
            none(&a.args, "auth enable command does not accept any arguments")?;
            ctx.client().await?
        }
        AuthCommand::Disable(a) => {
            none(&a.args, "auth disable command does not accept any arguments")?;
            ctx.client().await?
        }
    };
    match c {
        AuthCommand::Enable(_) => {
            loop {
                match ctx.call_raw(client.auth_enable(AuthEnableRequest {})).await {
                    Ok(_) => break,
                    Err(ClientError::Etcd(EtcdError::RootRoleNotExist)) => {
                        ctx.call(client.role_add(AuthRoleAddRequest { name: "root".into() })).await?;
                        let grant = AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() };
                        ctx.call(client.user_grant_role(grant)).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            ctx.out.extend_from_slice(b"Authentication Enabled\n");
        }
        AuthCommand::Disable(_) => {
            ctx.call(client.auth_disable(AuthDisableRequest {})).await?;
            ctx.out.extend_from_slice(b"Authentication Disabled\n");
        }
    }
    Ok(())
}

/// Reads a password: the first word of stdin with `--interactive=false`, else asked twice without echo
/// (etcdctl's readPasswordInteractive).
fn read_password(user: &str, interactive: bool) -> Result<String> {
    if !interactive {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| CtlError::bad_args(format!("failed to read password: {e}")))?;
        return Ok(line.split_whitespace().next().unwrap_or_default().to_owned());
    }
    let ask = |prompt: String| {
        crate::prompt::ask(&prompt).map_err(|e| CtlError::bad_args(format!("failed to ask password: {e}")))
    };
    let password = ask(format!("Password of {user}: "))?;
    if password.is_empty() {
        return Err(CtlError::bad_args("empty password"));
    }
    if ask(format!("Type password of {user} again for confirmation: "))? != password {
        return Err(CtlError::bad_args("given passwords are different"));
    }
    Ok(password)
}

pub async fn user(ctx: &mut Ctx, c: UserCommand) -> Result<()> {
    match c {
        UserCommand::Add(a) => user_add(ctx, a).await,
        UserCommand::Delete(a) => {
            let name = one(&a.args, "user delete command requires user name as its argument")?.to_owned();
            let client = ctx.client().await?;
            let r = ctx.call(client.user_delete(AuthUserDeleteRequest { name: name.clone() })).await?;
            ctx.printer.header_only(&mut ctx.out, r.header.as_ref(), &format!("User {name} deleted\n"), &r)
        }
        UserCommand::Get(a) => user_get(ctx, a).await,
        UserCommand::List(a) => {
            none(&a.args, "user list command requires no arguments")?;
            let client = ctx.client().await?;
            let r = ctx.call(client.user_list(AuthUserListRequest {})).await?;
            if ctx.printer.format == Format::Fields {
                return Err(CtlError::unsupported_format("fields"));
            }
            names(ctx, r.header.as_ref(), "users", "Users", &r.users, &r)
        }
        UserCommand::Passwd(a) => passwd(ctx, a).await,
        UserCommand::GrantRole(a) => {
            let [user, role] = a.args.as_slice() else {
                return Err(CtlError::bad_args(
                    "user grant command requires user name and role name as its argument",
                ));
            };
            let client = ctx.client().await?;
            let r = ctx
                .call(
                    client
                        .user_grant_role(AuthUserGrantRoleRequest { user: user.clone(), role: role.clone() }),
                )
                .await?;
            ctx.printer.header_only(
                &mut ctx.out,
                r.header.as_ref(),
                &format!("Role {role} is granted to user {user}\n"),
                &r,
            )
        }
        UserCommand::RevokeRole(a) => {
            let [user, role] = a.args.as_slice() else {
                return Err(CtlError::bad_args(
                    "user revoke-role requires user name and role name as its argument",
                ));
            };
            let client = ctx.client().await?;
            let r = ctx
                .call(
                    client.user_revoke_role(AuthUserRevokeRoleRequest {
                        name: user.clone(),
                        role: role.clone(),
                    }),
                )
                .await?;
            ctx.printer.header_only(
                &mut ctx.out,
                r.header.as_ref(),
                &format!("Role {role} is revoked from user {user}\n"),
                &r,
            )
        }
    }
}

async fn user_add(ctx: &mut Ctx, a: UserAddArgs) -> Result<()> {
    let arg = one(&a.args, "user add command requires user name as its argument")?.to_owned();
    let (name, password) = match arg.split_once(':') {
        _ if !a.new_user_password.is_empty() => (arg.clone(), a.new_user_password.clone()),
        Some(("", _)) => return Err(CtlError::bad_args("empty user name is not allowed")),
        Some((u, p)) => (u.to_owned(), p.to_owned()),
        None if a.no_password => (arg.clone(), String::new()),
        None => {
            let pw = read_password(&arg, a.interactive)?;
            (arg.clone(), pw)
        }
    };
    let client = ctx.client().await?;
    let req = AuthUserAddRequest {
        name: name.clone(),
        password,
        options: Some(cairn_api::authpb::UserAddOptions { no_password: a.no_password }),
        hashed_password: String::new(),
    };
    let r = ctx.call(client.user_add(req)).await?;
    ctx.printer.header_only(&mut ctx.out, r.header.as_ref(), &format!("User {name} created\n"), &r)
}

async fn passwd(ctx: &mut Ctx, a: PasswdArgs) -> Result<()> {
    let name = one(&a.args, "user passwd command requires user name as its argument")?.to_owned();
    let password = read_password(&name, a.interactive)?;
    let client = ctx.client().await?;
    let r = ctx
        .call(client.user_change_password(AuthUserChangePasswordRequest {
            name,
            password,
            hashed_password: String::new(),
        }))
        .await?;
    ctx.printer.header_only(&mut ctx.out, r.header.as_ref(), "Password updated\n", &r)
}

async fn user_get(ctx: &mut Ctx, a: UserGetArgs) -> Result<()> {
    let name = one(&a.args, "user get command requires user name as its argument")?.to_owned();
    let client = ctx.client().await?;
    let r = ctx.call(client.user_get(AuthUserGetRequest { name: name.clone() })).await?;
    if a.detail && ctx.printer.format == Format::Simple {
        ctx.out.extend_from_slice(format!("User: {name}\n").as_bytes());
        for role in &r.roles {
            ctx.out.push(b'\n');
            let rr = ctx.call(client.role_get(AuthRoleGetRequest { role: role.clone() })).await?;
            role_get_print(ctx, role, &rr)?;
        }
        return Ok(());
    }
    match ctx.printer.format {
        Format::Simple => {
            let mut text = format!("User: {name}\nRoles:");
            for role in &r.roles {
                text.push_str(&format!(" {role}"));
            }
            text.push('\n');
            ctx.out.extend_from_slice(text.as_bytes());
            Ok(())
        }
        Format::Json => {
            let roles = r.roles.iter().map(|x| gojson::string(x)).collect();
            let j = Obj::new().msg("header", json::header(r.header.as_ref())).list_oe("roles", roles).build();
            ctx.out.extend_from_slice(format!("{j}\n").as_bytes());
            Ok(())
        }
        Format::Protobuf => {
            ctx.out.extend_from_slice(&prost::Message::encode_to_vec(&r));
            Ok(())
        }
        f => Err(CtlError::unsupported_format(f.name())),
    }
}

/// A list of user or role names.
fn names(
    ctx: &mut Ctx,
    h: Option<&ResponseHeader>,
    json_name: &str,
    title: &str,
    list: &[String],
    r: &impl prost::Message,
) -> Result<()> {
    match ctx.printer.format {
        Format::Simple => {
            for n in list {
                ctx.out.extend_from_slice(format!("{n}\n").as_bytes());
            }
            Ok(())
        }
        Format::Json => {
            let items = list.iter().map(|x| gojson::string(x)).collect();
            let j = Obj::new().msg("header", json::header(h)).list_oe(json_name, items).build();
            ctx.out.extend_from_slice(format!("{j}\n").as_bytes());
            Ok(())
        }
        Format::Fields => names_fields(ctx, h, title, list),
        Format::Protobuf => {
            ctx.out.extend_from_slice(&r.encode_to_vec());
            Ok(())
        }
        Format::Table => Err(CtlError::unsupported_format("table")),
    }
}

fn names_fields(ctx: &mut Ctx, h: Option<&ResponseHeader>, title: &str, list: &[String]) -> Result<()> {
    crate::printer::fields_hdr(&mut ctx.out, h);
    let mut text = format!("\"{title}\" :");
    for n in list {
        text.push_str(&format!(" {}", quote(n.as_bytes())));
    }
    text.push('\n');
    ctx.out.extend_from_slice(text.as_bytes());
    Ok(())
}

pub async fn role(ctx: &mut Ctx, c: RoleCommand) -> Result<()> {
    match c {
        RoleCommand::Add(a) => {
            let name = one(&a.args, "role add command requires role name as its argument")?.to_owned();
            let client = ctx.client().await?;
            let r = ctx.call(client.role_add(AuthRoleAddRequest { name: name.clone() })).await?;
            ctx.printer.header_only(&mut ctx.out, r.header.as_ref(), &format!("Role {name} created\n"), &r)
        }
        RoleCommand::Delete(a) => {
            let name = one(&a.args, "role delete command requires role name as its argument")?.to_owned();
            let client = ctx.client().await?;
            let r = ctx.call(client.role_delete(AuthRoleDeleteRequest { role: name.clone() })).await?;
            ctx.printer.header_only(&mut ctx.out, r.header.as_ref(), &format!("Role {name} deleted\n"), &r)
        }
        RoleCommand::Get(a) => {
            let name = one(&a.args, "role get command requires role name as its argument")?.to_owned();
            let client = ctx.client().await?;
            let r = ctx.call(client.role_get(AuthRoleGetRequest { role: name.clone() })).await?;
            role_get_print(ctx, &name, &r)
        }
        RoleCommand::List(a) => {
            none(&a.args, "role list command requires no arguments")?;
            let client = ctx.client().await?;
            let r = ctx.call(client.role_list(AuthRoleListRequest {})).await?;
            names(ctx, r.header.as_ref(), "roles", "Roles", &r.roles, &r)
        }
        RoleCommand::GrantPermission(a) => grant(ctx, a).await,
        RoleCommand::RevokePermission(a) => revoke(ctx, a.into()).await,
    }
}

fn role_get_print(ctx: &mut Ctx, name: &str, r: &AuthRoleGetResponse) -> Result<()> {
    let text = match ctx.printer.format {
        Format::Simple => role_get_simple(name, &r.perm),
        Format::Json => {
            let perms = r
                .perm
                .iter()
                .map(|p| {
                    Obj::new()
                        .int_oe("permType", p.perm_type)
                        .bytes_oe("key", &p.key)
                        .bytes_oe("range_end", &p.range_end)
                        .build()
                })
                .collect();
            Obj::new().msg("header", json::header(r.header.as_ref())).list_oe("perm", perms).build() + "\n"
        }
        Format::Fields => {
            crate::printer::fields_hdr(&mut ctx.out, r.header.as_ref());
            let mut t = String::new();
            for p in &r.perm {
                t.push_str(&format!("\"PermType\" :  {}\n", perm_name(p.perm_type)));
                t.push_str(&format!("\"Key\" : {}\n", quote(&p.key)));
                t.push_str(&format!("\"RangeEnd\" : {}\n", quote(&p.range_end)));
            }
            t
        }
        Format::Protobuf => {
            ctx.out.extend_from_slice(&prost::Message::encode_to_vec(r));
            return Ok(());
        }
        Format::Table => return Err(CtlError::unsupported_format("table")),
    };
    ctx.out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn perm_name(t: i32) -> &'static str {
    match PermType::try_from(t) {
        Ok(PermType::Write) => "WRITE",
        Ok(PermType::Readwrite) => "READWRITE",
        _ => "READ",
    }
}

fn role_get_simple(name: &str, perms: &[Permission]) -> String {
    let mut t = format!("Role {name}\nKV Read:\n");
    let range = |p: &Permission| {
        let (k, e) = (String::from_utf8_lossy(&p.key), String::from_utf8_lossy(&p.range_end));
        let mut s =
            if p.range_end == [0] { format!("\t[{k}, <open ended>") } else { format!("\t[{k}, {e})") };
        if prefix_end(&p.key) == p.range_end {
            s.push_str(&format!(" (prefix {k})"));
        }
        s + "\n"
    };
    let entry = |p: &Permission| {
        if p.range_end.is_empty() {
            format!("\t{}\n", String::from_utf8_lossy(&p.key))
        } else {
            range(p)
        }
    };
    for p in perms.iter().filter(|p| p.perm_type != PermType::Write as i32) {
        t.push_str(&entry(p));
    }
    t.push_str("KV Write:\n");
    for p in perms.iter().filter(|p| p.perm_type != PermType::Read as i32) {
        t.push_str(&entry(p));
    }
    t
}

/// etcdctl's permRange: key and range end from the arguments and --prefix/--from-key.
fn perm_range(a: &PermArgs, args: &[String]) -> Result<(Vec<u8>, Vec<u8>)> {
    let key = args[0].clone().into_bytes();
    if key.is_empty() {
        if a.prefix && a.from_key {
            return Err(CtlError::bad_args("--from-key and --prefix flags are mutually exclusive"));
        }
        let end = if a.prefix || a.from_key { vec![0] } else { Vec::new() };
        return Ok((vec![0], end));
    }
    if args.len() == 2 {
        if a.prefix {
            return Err(CtlError::bad_args("unexpected endkey argument with --prefix"));
        }
        if a.from_key {
            return Err(CtlError::bad_args("unexpected endkey argument with --from-key"));
        }
        return Ok((key, args[1].clone().into_bytes()));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args("--from-key and --prefix flags are mutually exclusive"));
    }
    let end = if a.prefix {
        prefix_end(&key)
    } else if a.from_key {
        vec![0]
    } else {
        Vec::new()
    };
    Ok((key, end))
}

async fn grant(ctx: &mut Ctx, a: PermArgs) -> Result<()> {
    if a.args.len() < 3 {
        return Err(CtlError::bad_args(
            "role grant command requires role name, permission type, and key [endkey] as its argument",
        ));
    }
    let perm_type = match a.args[1].to_uppercase().as_str() {
        "READ" => PermType::Read,
        "WRITE" => PermType::Write,
        "READWRITE" => PermType::Readwrite,
        _ => return Err(CtlError::bad_args(format!("invalid permission type: {}", a.args[1]))),
    };
    let (key, range_end) = perm_range(&a, &a.args[2..])?;
    let role = a.args[0].clone();
    let client = ctx.client().await?;
    let req = AuthRoleGrantPermissionRequest {
        name: role.clone(),
        perm: Some(Permission { perm_type: perm_type as i32, key, range_end }),
    };
    let r = ctx.call(client.role_grant_permission(req)).await?;
    ctx.printer.header_only(&mut ctx.out, r.header.as_ref(), &format!("Role {role} updated\n"), &r)
}

async fn revoke(ctx: &mut Ctx, a: PermArgs) -> Result<()> {
    if a.args.len() < 2 {
        return Err(CtlError::bad_args(
            "role revoke-permission command requires role name and key [endkey] as its argument",
        ));
    }
    let (key, range_end) = perm_range(&a, &a.args[1..])?;
    let role = a.args[0].clone();
    let client = ctx.client().await?;
    let req = AuthRoleRevokePermissionRequest { role: role.clone(), key, range_end: range_end.clone() };
    let r = ctx.call(client.role_revoke_permission(req)).await?;
    let k = &a.args[1];
    let simple = if range_end.is_empty() {
        format!("Permission of key {k} is revoked from role {role}\n")
    } else if range_end != [0] {
        format!(
            "Permission of range [{k}, {}) is revoked from role {role}\n",
            String::from_utf8_lossy(&range_end)
        )
    } else {
        format!("Permission of range [{k}, <open ended> is revoked from role {role}\n")
    };
    ctx.printer.header_only(&mut ctx.out, r.header.as_ref(), &simple, &r)
}
