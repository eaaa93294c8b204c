//! The command line as cobra and pflag treat etcdctl's: clap parses, and its errors are turned into cobra's
//! texts (`unknown flag: --x`, `unknown command "x" for "etcdctl"` with suggestions, printed twice as etcdctl
//! does), and a flag given both on the command line and as ETCDCTL_* is refused as etcd's pkg/flags refuses it.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};

use crate::cli::Cli;
use crate::ctx::log_timestamp;
use crate::error::{CtlError, Result};

/// Global flags that have an ETCDCTL_* twin.
const ENV_FLAGS: &[&str] = &[
    "endpoints",
    "write-out",
    "hex",
    "dial-timeout",
    "command-timeout",
    "keepalive-time",
    "keepalive-timeout",
    "user",
    "password",
    "cert",
    "key",
    "cacert",
    "insecure-skip-tls-verify",
    "insecure-transport",
    "discovery-srv",
    "discovery-srv-name",
    "insecure-discovery",
    "debug",
];

pub fn parse(argv: Vec<OsString>) -> Result<Cli> {
    check_env_conflicts(&argv)?;
    let mut command = Cli::command();
    if argv.len() <= 1 {
        let help = crate::usage::usage(&command, &[]).unwrap_or_default();
        return Err(CtlError::Verbatim { code: 0, stdout: help, stderr: String::new() });
    }
    let matches = match command.try_get_matches_from_mut(argv) {
        Ok(m) => m,
        Err(e) => return Err(cobra_error(&e)),
    };
    Cli::from_arg_matches(&matches).map_err(|e| cobra_error(&e))
}

fn check_env_conflicts(argv: &[OsString]) -> Result<()> {
    for flag in ENV_FLAGS {
        let env = format!("ETCDCTL_{}", flag.to_uppercase().replace('-', "_"));
        if std::env::var_os(&env).is_none_or(|v| v.is_empty()) {
            continue;
        }
        let long = format!("--{flag}");
        let given =
            argv.iter().skip(1).filter_map(|a| a.to_str()).any(|a| {
                a == long || a.strip_prefix(long.as_str()).is_some_and(|rest| rest.starts_with('='))
            });
        if given {
            return Err(CtlError::verbatim(
                1,
                format!(
                    "{} C | pkg/flags: conflicting environment variable \"{env}\" is shadowed by corresponding \
                     command-line flag (either unset environment variable or disable flag)\n",
                    log_timestamp(false)
                ),
            ));
        }
    }
    Ok(())
}

/// Cobra prints the error, then etcdctl prints it again.
fn twice(message: &str, between: &str) -> CtlError {
    CtlError::verbatim(1, format!("Error: {message}\n{between}Error: {message}\n"))
}

/// A flag that does not parse: cobra's error twice on stderr and the command's usage on stdout.
pub fn flag_error(message: &str) -> CtlError {
    let root = Cli::command();
    let argv: Vec<String> = std::env::args().collect();
    let stdout = crate::usage::usage(&root, &crate::usage::command_path(&root, &argv)).unwrap_or_default();
    CtlError::Verbatim { code: 1, stdout, stderr: format!("Error: {message}\n\nError: {message}\n") }
}

fn context(e: &clap::Error, kind: ContextKind) -> String {
    match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.first().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

fn cobra_error(e: &clap::Error) -> CtlError {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        | ErrorKind::MissingSubcommand => {
            // cobra prints the command's help and exits 0.
            let root = Cli::command();
            let argv: Vec<String> = std::env::args().collect();
            let stdout = crate::usage::usage(&root, &crate::usage::command_path(&root, &argv))
                .unwrap_or_else(|| e.render().to_string());
            CtlError::Verbatim { code: 0, stdout, stderr: String::new() }
        }
        ErrorKind::InvalidSubcommand => {
            let name = context(e, ContextKind::InvalidSubcommand);
            let mut message = format!("unknown command {name:?} for \"etcdctl\"");
            let suggestions = suggest(&name);
            if !suggestions.is_empty() {
                message.push_str("\n\nDid you mean this?\n");
                for s in suggestions {
                    message.push_str(&format!("\t{s}\n"));
                }
            }
            twice(&message, "Run 'etcdctl --help' for usage.\n")
        }
        ErrorKind::UnknownArgument => {
            let arg = context(e, ContextKind::InvalidArg);
            let flag = arg.split('=').next().unwrap_or_default();
            let message = match flag.strip_prefix("--") {
                Some(_) => format!("unknown flag: {flag}"),
                None => {
                    let c = flag.trim_start_matches('-').chars().next().unwrap_or('-');
                    format!("unknown shorthand flag: '{c}' in {flag}")
                }
            };
            flag_error(&message)
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let arg = context(e, ContextKind::InvalidArg);
            let value = context(e, ContextKind::InvalidValue);
            let flag = arg.split([' ', '=', '[']).next().unwrap_or_default();
            flag_error(&format!(
                "invalid argument {value:?} for {flag:?} flag: strconv.ParseBool: parsing {value:?}: invalid syntax"
            ))
        }
        ErrorKind::NoEquals | ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues => {
            let arg = context(e, ContextKind::InvalidArg);
            let flag = arg.split([' ', '=']).next().unwrap_or_default();
            flag_error(&format!("flag needs an argument: {flag}"))
        }
        _ => flag_error(e.to_string().trim_start_matches("error: ").trim_end()),
    }
}

/// Cobra's suggestions: commands within Levenshtein distance 2, or starting with what was typed.
fn suggest(typed: &str) -> Vec<String> {
    let lower = typed.to_lowercase();
    let mut names: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .chain(["help".to_owned()])
        .collect();
    names.sort();
    names.into_iter().filter(|n| levenshtein(&lower, n) <= 2 || n.starts_with(&lower)).collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_text(args: &[&str]) -> (i32, String) {
        match parse(args.iter().map(OsString::from).collect()) {
            Ok(_) => (0, String::new()),
            Err(CtlError::Verbatim { code, stderr, .. }) => (code, stderr),
            Err(e) => (e.code(), e.to_string()),
        }
    }

    #[test]
    fn unknown_commands_as_cobra() {
        let (code, text) = err_text(&["etcdctl", "nocmd"]);
        assert_eq!(code, 1);
        assert_eq!(
            text,
            "Error: unknown command \"nocmd\" for \"etcdctl\"\nRun 'etcdctl --help' for usage.\n\
             Error: unknown command \"nocmd\" for \"etcdctl\"\n"
        );
        let (_, text) = err_text(&["etcdctl", "a"]);
        assert!(text.contains("Did you mean this?\n\talarm\n\tauth\n\nRun"), "{text}");
    }

    #[test]
    fn unknown_flags_as_pflag() {
        let (code, text) = err_text(&["etcdctl", "get", "--bogus", "a"]);
        // (the usage goes to stdout; see usage.rs)
        assert_eq!(
            (code, text.as_str()),
            (1, "Error: unknown flag: --bogus\n\nError: unknown flag: --bogus\n")
        );
        let (_, text) = err_text(&["etcdctl", "get", "-x", "a"]);
        assert!(text.starts_with("Error: unknown shorthand flag: 'x' in -x\n"), "{text}");
    }

    #[test]
    fn flags_parse_anywhere() {
        let cli =
            parse(["etcdctl", "get", "k", "--prefix", "-w", "json"].iter().map(OsString::from).collect())
                .unwrap();
        assert_eq!(cli.global.write_out, "json");
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }
}
