//! etcdctl's usage text (its cobra template: NAME, USAGE, OPTIONS, GLOBAL OPTIONS), printed on stdout when a
//! command's flags do not parse, as cobra does. Flags are listed sorted, pflag-style (`--limit=0`,
//! `--prefix[=false]`, `--order=""`), their help aligned on tab stops as Go's tabwriter aligns it.

use clap::{ArgAction, Command};

/// Each command's usage line, as etcdctl's `Use` strings render it.
const USE_LINES: &[(&str, &str)] = &[
    ("get", "get [options] <key> [range_end]"),
    ("put", "put [options] <key> <value> (<value> can also be given from stdin)"),
    ("del", "del [options] <key> [range_end]"),
    ("txn", "txn [options]"),
    ("compaction", "compaction [options] <revision>"),
    ("watch", "watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]"),
    ("lease grant", "lease grant <ttl>"),
    ("lease revoke", "lease revoke <leaseID>"),
    ("lease timetolive", "lease timetolive <leaseID> [options]"),
    ("lease list", "lease list"),
    ("lease keep-alive", "lease keep-alive [options] <leaseID>"),
    ("member add", "member add <memberName> [options]"),
    ("member remove", "member remove <memberID>"),
    ("member update", "member update <memberID> [options]"),
    ("member list", "member list"),
    ("member promote", "member promote <memberID>"),
    ("endpoint health", "endpoint health"),
    ("endpoint status", "endpoint status"),
    ("endpoint hashkv", "endpoint hashkv"),
    ("alarm disarm", "alarm disarm"),
    ("alarm list", "alarm list"),
    ("defrag", "defrag"),
    ("snapshot save", "snapshot save <filename>"),
    ("snapshot restore", "snapshot restore <filename> [options]"),
    ("snapshot status", "snapshot status <filename>"),
    ("move-leader", "move-leader <transferee-member-id>"),
    ("lock", "lock <lockname> [exec-command arg1 arg2 ...]"),
    ("elect", "elect <election-name> [proposal]"),
    ("auth enable", "auth enable"),
    ("auth disable", "auth disable"),
    ("user add", "user add <user name or user:password> [options]"),
    ("user delete", "user delete <user name>"),
    ("user get", "user get <user name> [options]"),
    ("user list", "user list"),
    ("user passwd", "user passwd <user name> [options]"),
    ("user grant-role", "user grant-role <user name> <role name>"),
    ("user revoke-role", "user revoke-role <user name> <role name>"),
    ("role add", "role add <role name>"),
    ("role delete", "role delete <role name>"),
    ("role get", "role get <role name>"),
    ("role list", "role list"),
    ("role grant-permission", "role grant-permission [options] <role name> <permission type> <key> [endkey]"),
    ("role revoke-permission", "role revoke-permission <role name> <key> [endkey]"),
    ("make-mirror", "make-mirror [options] <destination>"),
    ("version", "version"),
    ("check perf", "check perf [options]"),
];

/// The DESCRIPTION section of commands with a long help text, line by line.
const DESCRIPTIONS: &[(&str, &[&str])] = &[
    (
        "put",
        &[
            "Puts the given key into the store.",
            "",
            "When <value> begins with '-', <value> is interpreted as a flag.",
            "Insert '--' for workaround:",
            "",
            "$ put <key> -- <value>",
            "$ put -- <key> <value>",
            "",
            "If <value> isn't given as a command line argument and '--ignore-value' is not specified,",
            "this command tries to read the value from standard input.",
            "",
            "If <lease> isn't given as a command line argument and '--ignore-lease' is not specified,",
            "this command tries to read the value from standard input.",
            "",
            "For example,",
            "$ cat file | put <key>",
            "will store the content of the file to <key>.",
        ],
    ),
    (
        "member list",
        &[
            "When --write-out is set to simple, this command prints out comma-separated member lists for each endpoint.",
            "The items in the lists are ID, Status, Name, Peer Addrs, Client Addrs, Is Learner.",
        ],
    ),
    ("member promote", &["Promotes a non-voting learner member to a voting one in the cluster."]),
    (
        "endpoint status",
        &[
            "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.",
            "The items in the lists are endpoint, ID, version, db size, is leader, is learner, raft term, raft index, raft applied index, errors.",
        ],
    ),
    (
        "snapshot status",
        &[
            "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.",
            "The items in the lists are hash, revision, total keys, total size.",
        ],
    ),
];

/// Flags whose pflag type is not a string: their default is shown unquoted.
const UNQUOTED: &[&str] = &[
    "limit",
    "rev",
    "ttl",
    "dial-timeout",
    "command-timeout",
    "keepalive-time",
    "keepalive-timeout",
    "interactive",
];

/// The command path (`["lease", "grant"]`) the arguments select.
pub fn command_path(root: &Command, argv: &[String]) -> Vec<String> {
    let mut path = Vec::new();
    let mut cmd = root;
    for a in argv.iter().skip(1).filter(|a| !a.starts_with('-')) {
        match cmd.find_subcommand(a) {
            Some(sub) => {
                path.push(a.clone());
                cmd = sub;
            }
            None if path.is_empty() => {}
            None => break,
        }
    }
    path
}

fn flag_line(arg: &clap::Arg) -> Option<(String, String)> {
    let long = arg.get_long()?;
    let short = arg.get_short().map_or("   ".to_owned(), |s| format!("-{s},"));
    let defaults: Vec<String> =
        arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    let is_bool = matches!(arg.get_action(), ArgAction::SetTrue)
        || matches!(defaults.first().map(String::as_str), Some("true" | "false"));
    let value = if is_bool {
        format!("[={}]", defaults.first().map_or("false", String::as_str))
    } else if long == "endpoints" {
        format!("=[{}]", defaults.join(","))
    } else if UNQUOTED.contains(&long) {
        format!("={}", defaults.first().map_or("0", String::as_str))
    } else {
        format!("={:?}", defaults.first().map_or("", String::as_str))
    };
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    Some((format!("  {short} --{long}{value}"), help))
}

/// Lines `cell<tabs>help`, cells padded with tabs to one column, as tabwriter (tab width 8, padding 1) does.
fn tabulate(rows: &[(String, String)]) -> String {
    let width = rows.iter().map(|(c, _)| c.chars().count()).max().unwrap_or(0);
    let column = (width + 1).div_ceil(8) * 8;
    let mut out = String::new();
    for (cell, help) in rows {
        let tabs = (column - cell.chars().count()).div_ceil(8);
        out.push_str(&format!("{cell}{}{help}\n", "\t".repeat(tabs)));
    }
    out
}

/// `\tname<tabs>short` lines of a COMMANDS section.
fn command_list(rows: &[(String, String)]) -> String {
    tabulate(rows).lines().map(|l| format!("\t{l}\n")).collect()
}

/// Every leaf command under `cmd` with its path from `cmd`, sorted (the root's COMMANDS section).
fn leaves(cmd: &Command, prefix: &str, out: &mut Vec<(String, String)>) {
    for sub in cmd.get_subcommands() {
        let name = if prefix.is_empty() {
            sub.get_name().to_owned()
        } else {
            format!("{prefix} {}", sub.get_name())
        };
        if sub.has_subcommands() {
            leaves(sub, &name, out);
        } else {
            out.push((name, sub.get_about().map(ToString::to_string).unwrap_or_default()));
        }
    }
}

fn sorted_flags<'a>(args: impl Iterator<Item = &'a clap::Arg>) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = args.filter_map(flag_line).collect();
    rows.sort_by(|a, b| long_name(&a.0).cmp(long_name(&b.0)));
    rows
}

/// The help of the root or of a command group (`lease`, `member`, ...): its subcommands and flags.
fn group_usage(root: &Command, cmd: &Command, path: &[String]) -> String {
    let help_row = |name: &str| ("  -h, --help[=false]".to_owned(), format!("help for {name}"));
    if path.is_empty() {
        let mut commands = Vec::new();
        leaves(root, "", &mut commands);
        commands.sort();
        let mut flags = sorted_flags(root.get_arguments().filter(|a| a.is_global_set()));
        flags.push(help_row("etcdctl"));
        flags.sort_by(|a, b| long_name(&a.0).cmp(long_name(&b.0)));
        return format!(
            "NAME:\n\tetcdctl - {}\n\nUSAGE:\n\tetcdctl [flags]\n\nVERSION:\n\t3.4.23\n\nAPI VERSION:\n\t3.4\n\n\n\
             COMMANDS:\n{}\nOPTIONS:\n{}\n",
            root.get_about().map(ToString::to_string).unwrap_or_default(),
            command_list(&commands),
            tabulate(&flags)
        );
    }
    let joined = path.join(" ");
    // etcdctl's `Use` of each group: "<subcommand>" except auth's.
    let what = if joined == "auth" { "<enable or disable>" } else { "<subcommand>" };
    let mut commands: Vec<(String, String)> = cmd
        .get_subcommands()
        .map(|s| (s.get_name().to_owned(), s.get_about().map(ToString::to_string).unwrap_or_default()))
        .collect();
    commands.sort();
    let mut local = sorted_flags(cmd.get_arguments().filter(|a| a.get_id() != "help"));
    local.push(help_row(path.last().map_or("", String::as_str)));
    local.sort_by(|a, b| long_name(&a.0).cmp(long_name(&b.0)));
    let global = sorted_flags(root.get_arguments().filter(|a| a.is_global_set()));
    format!(
        "NAME:\n\t{joined} - {}\n\nUSAGE:\n\tetcdctl {joined} {what} [flags]\n\nAPI VERSION:\n\t3.4\n\n\n\
         COMMANDS:\n{}\nOPTIONS:\n{}\nGLOBAL OPTIONS:\n{}\n",
        cmd.get_about().map(ToString::to_string).unwrap_or_default(),
        command_list(&commands),
        tabulate(&local),
        tabulate(&global)
    )
}

/// The usage (cobra's help) of the command at `path`; the root's when `path` is empty.
pub fn usage(root: &Command, path: &[String]) -> Option<String> {
    let mut cmd = root;
    for p in path {
        cmd = cmd.find_subcommand(p)?;
    }
    if cmd.has_subcommands() {
        return Some(group_usage(root, cmd, path));
    }
    let joined = path.join(" ");
    let use_line = USE_LINES.iter().find(|(p, _)| *p == joined)?.1;
    let short = cmd.get_about().map(ToString::to_string).unwrap_or_default();
    let mut local: Vec<(String, String)> = cmd
        .get_arguments()
        .filter(|a| !a.is_global_set() && a.get_long().is_some() && a.get_id() != "help")
        .filter_map(flag_line)
        .collect();
    local.push((
        "  -h, --help[=false]".to_owned(),
        format!("help for {}", path.last().map_or("", String::as_str)),
    ));
    local.sort_by(|a, b| long_name(&a.0).cmp(long_name(&b.0)));
    // Persistent flags of the root and of every parent command are inherited.
    let mut global: Vec<(String, String)> =
        root.get_arguments().filter(|a| a.is_global_set()).filter_map(flag_line).collect();
    let mut parent = root;
    for p in &path[..path.len().saturating_sub(1)] {
        parent = parent.find_subcommand(p)?;
        global.extend(parent.get_arguments().filter(|a| a.is_global_set()).filter_map(flag_line));
    }
    global.sort_by(|a, b| long_name(&a.0).cmp(long_name(&b.0)));
    let description = DESCRIPTIONS
        .iter()
        .find(|(p, _)| *p == joined)
        .map(|(_, lines)| {
            let body: String = lines.iter().map(|l| format!("\t{l}\n")).collect();
            format!("DESCRIPTION:\n{body}\n")
        })
        .unwrap_or_default();
    Some(format!(
        "NAME:\n\t{joined} - {short}\n\nUSAGE:\n\tetcdctl {use_line} [flags]\n\n{description}OPTIONS:\n{}\nGLOBAL OPTIONS:\n{}\n",
        tabulate(&local),
        tabulate(&global)
    ))
}

/// The flag's name in a usage cell, for pflag's sort order.
fn long_name(cell: &str) -> &str {
    let name = cell.split("--").nth(1).unwrap_or(cell);
    name.split(['=', '[']).next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn lease_grant_usage_as_etcdctl() {
        let root = crate::cli::Cli::command();
        let argv: Vec<String> =
            ["etcdctl", "lease", "grant", "--bogus"].iter().map(|s| (*s).to_owned()).collect();
        let path = command_path(&root, &argv);
        assert_eq!(path, ["lease", "grant"]);
        let text = usage(&root, &path).unwrap();
        assert!(text.starts_with(
            "NAME:\n\tlease grant - Creates leases\n\nUSAGE:\n\tetcdctl lease grant <ttl> [flags]\n\n\
             OPTIONS:\n  -h, --help[=false]\thelp for grant\n\nGLOBAL OPTIONS:\n      --cacert=\"\"\t\t\t\tverify"
        ), "{text}");
        assert!(text.contains("      --endpoints=[127.0.0.1:2379]\t\tgRPC endpoints\n"), "{text}");
    }
}
