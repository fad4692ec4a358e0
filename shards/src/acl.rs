//! The ACL file on the runtime side: reading it (size-capped, before
//! parsing), the SIGHUP reload hook and the shard task that installs a
//! reloaded ACL, and the `ringmq acl add|remove|list|check` subcommands
//! (their flags are in `cli`). The
//! format and the precedence rules live with the parser and the compiled
//! form in `ringmq_engine::acl`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{AclArgs, AclCommand};
use crate::reload::{Cached, Outcome, Reloadable};
use crate::shard::state::Shard;
use ringmq_engine::acl::{
    parse, parse_bytes, Access, Acl, AclError, AclFile, Action, Scope, ACL_FILE_SIZE_MAX_BYTES,
};

/// Reads and parses an ACL file; the error names the file and the line.
pub fn load(path: &Path) -> Result<AclFile, String> {
    let bytes = read_capped(path)?;
    parse_bytes(&bytes).map_err(|e| format!("ACL file {}: {e}", path.display()))
}

/// The file's bytes, refusing one over [`ACL_FILE_SIZE_MAX_BYTES`]
/// before reading it all.
fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read ACL file {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    let cap = ACL_FILE_SIZE_MAX_BYTES as u64 + 1;
    file.take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read ACL file {}: {e}", path.display()))?;
    if bytes.len() > ACL_FILE_SIZE_MAX_BYTES {
        return Err(format!(
            "ACL file {} is larger than the limit of {ACL_FILE_SIZE_MAX_BYTES} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

/// The configured ACL (`[auth] acl_file`), compiled, or `None` when no
/// file is configured (everything allowed).
pub fn load_configured(acl_file: &str) -> Result<Option<Acl>, String> {
    if acl_file.is_empty() {
        return Ok(None);
    }
    load(Path::new(acl_file)).map(|f| Some(Acl::compile(f)))
}

/// The SIGHUP hook: re-reads `path`; a file that cannot be read or parsed
/// is refused and the ACL in force stays. Compares rules, so an untouched
/// file reports "unchanged".
pub fn reload_hook(path: PathBuf, shared: Arc<Reloadable<Acl>>) -> impl FnMut() -> Outcome + Send {
    move || {
        let file = match load(&path) {
            Ok(f) => f,
            Err(why) => return Outcome::Refused(why),
        };
        let old = shared.load();
        if old.rules() == file.rules.as_slice() {
            return Outcome::Unchanged;
        }
        let count = file.rules.len();
        shared.store(Acl::compile(file));
        Outcome::Changed(format!(
            "ACL file {}: {count} rules (was {}); every session is checked against them within {ACL_RELOAD_POLL_MS} ms",
            path.display(),
            old.rules().len()
        ))
    }
}

/// How often a shard looks for a reloaded ACL, in milliseconds. Polled (one
/// atomic load) rather than signalled, so an idle shard needs no wake-up
/// path from the main thread; the task runs only when an ACL is configured.
pub const ACL_RELOAD_POLL_MS: u64 = 250;

/// A shard's task that installs a reloaded ACL in its broker, which
/// rebuilds every session's view ([`ringmq_engine::broker::Broker::set_acl`]).
pub async fn follow_reloads(shard: Rc<Shard>, cached: Cached<Acl>) {
    let mut current = cached.get();
    while !shard.is_stopping() {
        monoio::time::sleep(Duration::from_millis(ACL_RELOAD_POLL_MS)).await;
        let latest = cached.get();
        if !Arc::ptr_eq(&latest, &current) {
            shard.broker.borrow_mut().set_acl(Some(latest.clone()));
            tracing::info!(
                shard = shard.id,
                rules = latest.rules().len(),
                "ACL reloaded"
            );
            current = latest;
        }
    }
}

/// Runs an `acl` subcommand, printing its result or error.
pub fn run(args: AclArgs) -> ExitCode {
    let result = match args.command {
        AclCommand::Add {
            file,
            scope,
            access,
            filter,
        } => add(&file, &scope.scope(), &access, &filter),
        AclCommand::Remove {
            file,
            scope,
            access,
            filter,
        } => remove(&file, &scope.scope(), &access, &filter),
        AclCommand::List {
            file,
            scope,
            anonymous,
        } => {
            let only = if anonymous {
                Some(Scope::Anonymous)
            } else if scope.user.is_some() || scope.client.is_some() || scope.pattern {
                Some(scope.scope())
            } else {
                None
            };
            list(&file, only.as_ref())
        }
        AclCommand::Check {
            file,
            user,
            client,
            action,
            topic,
        } => {
            return match check(&file, user.as_deref(), &client, &action, &topic) {
                Ok((true, text)) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Ok((false, text)) => {
                    println!("{text}");
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("ringmq acl: {e}");
                    ExitCode::from(2)
                }
            }
        }
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringmq acl: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse_access(word: &str) -> Result<Access, String> {
    Access::from_word(word).ok_or_else(|| {
        format!("unknown access `{word}` (expected read, write, readwrite, subscribe or deny)")
    })
}

/// A name or filter given on the command line must survive being written
/// as the rest of a line and read back.
fn check_text(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("empty {what}"));
    }
    if value.contains(['\n', '\r']) || value.trim_matches([' ', '\t']) != value {
        return Err(format!(
            "{what} `{value}` cannot be written to an ACL file (line break, or blanks at either end)"
        ));
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<String, String> {
    let bytes = read_capped(path)?;
    String::from_utf8(bytes).map_err(|_| format!("ACL file {} is not UTF-8", path.display()))
}

fn header_line(scope: &Scope) -> Option<String> {
    match scope {
        Scope::User(name) => Some(format!("user {name}")),
        Scope::Client(id) => Some(format!("client {id}")),
        Scope::Anonymous | Scope::Pattern => None,
    }
}

/// `text` with `rule` inserted where its scope says (module docs of
/// `ringmq_engine::acl`): an anonymous rule after the last anonymous rule
/// (before the first section); a user / client rule at the end of the last
/// section for that name (a new section at the end if there is none); a
/// pattern at the end.
pub fn add_rule(text: &str, scope: &Scope, access: Access, filter: &str) -> Result<String, String> {
    let file = parse(text).map_err(|e| format!("the file is invalid, fix it first: {e}"))?;
    if let Some(existing) = file
        .rules
        .iter()
        .find(|r| &r.scope == scope && r.access == access && r.filter == filter)
    {
        return Err(format!(
            "the rule is already there (line {}: {existing})",
            existing.line
        ));
    }
    let keyword = if *scope == Scope::Pattern {
        "pattern"
    } else {
        "topic"
    };
    let rule_line = format!("{keyword} {} {filter}", access.as_str());
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let last_rule_in = |from: u32, to: u32| {
        file.rules
            .iter()
            .filter(|r| r.line > from && r.line < to)
            .map(|r| r.line)
            .max()
    };
    let end = u32::try_from(lines.len() + 1).unwrap_or(u32::MAX);
    let first_header = file.headers.first().map_or(end, |h| h.line);
    // Index in `lines` to insert at, and whether a new header goes first.
    let (at, header) = match scope {
        Scope::Pattern => (lines.len(), None),
        Scope::Anonymous => match last_rule_in(0, first_header) {
            Some(line) => (line as usize, None),
            None => ((first_header - 1) as usize, None),
        },
        Scope::User(_) | Scope::Client(_) => {
            match file.headers.iter().rposition(|h| &h.scope == scope) {
                Some(i) => {
                    let start = file.headers.get(i).map_or(0, |h| h.line);
                    let next = file.headers.get(i + 1).map_or(end, |h| h.line);
                    let after = last_rule_in(start, next).unwrap_or(start);
                    (after as usize, None)
                }
                None => (lines.len(), header_line(scope)),
            }
        }
    };
    let mut insert = Vec::new();
    if let Some(h) = header {
        if lines.last().is_some_and(|l| !l.trim().is_empty()) {
            insert.push(String::new());
        }
        insert.push(h);
    }
    insert.push(rule_line);
    let at = at.min(lines.len());
    lines.splice(at..at, insert);
    let mut out = lines.join("\n");
    out.push('\n');
    // The new text must parse, and hold the rule (the filter is checked here).
    // Line numbers of the new text mean nothing to the user: left out.
    let parsed = parse(&out).map_err(|e| {
        let without_line = AclError { line: 0, ..e };
        format!("rule refused: {without_line}")
    })?;
    debug_assert!(parsed
        .rules
        .iter()
        .any(|r| &r.scope == scope && r.access == access && r.filter == filter));
    Ok(out)
}

/// `text` without the lines holding this rule; an error if there is none.
pub fn remove_rule(
    text: &str,
    scope: &Scope,
    access: Access,
    filter: &str,
) -> Result<(String, Vec<u32>), String> {
    let file = parse(text).map_err(|e| format!("the file is invalid, fix it first: {e}"))?;
    let gone: Vec<u32> = file
        .rules
        .iter()
        .filter(|r| &r.scope == scope && r.access == access && r.filter == filter)
        .map(|r| r.line)
        .collect();
    if gone.is_empty() {
        return Err(format!(
            "no rule `{} {} {filter}` for {scope}",
            if *scope == Scope::Pattern {
                "pattern"
            } else {
                "topic"
            },
            access.as_str()
        ));
    }
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if !gone.contains(&n) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok((out, gone))
}

/// Replaces `path` with `text` atomically (a temporary file, then rename),
/// keeping the old file's permissions.
fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "acl".into());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    std::fs::write(&tmp, text).map_err(fail)?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(&tmp, meta.permissions()).map_err(fail)?;
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        // The temporary file is ours; a failed clean-up only leaves it behind.
        if let Err(cleanup) = std::fs::remove_file(&tmp) {
            tracing::debug!(error = %cleanup, "cannot remove temporary ACL file");
        }
        fail(e)
    })
}

fn add(path: &Path, scope: &Scope, access: &str, filter: &str) -> Result<String, String> {
    let access = parse_access(access)?;
    check_scope(scope)?;
    check_text("topic filter", filter)?;
    let text = match read_text(path) {
        Ok(t) => t,
        Err(_) if !path.exists() => String::new(),
        Err(e) => return Err(e),
    };
    let out = add_rule(&text, scope, access, filter)?;
    write_atomic(path, &out)?;
    Ok(format!(
        "added for {scope}: {} {} {filter}\n",
        if *scope == Scope::Pattern {
            "pattern"
        } else {
            "topic"
        },
        access.as_str()
    ))
}

fn check_scope(scope: &Scope) -> Result<(), String> {
    match scope {
        Scope::User(name) => check_text("user name", name),
        Scope::Client(id) => check_text("client id", id),
        Scope::Anonymous | Scope::Pattern => Ok(()),
    }
}

fn remove(path: &Path, scope: &Scope, access: &str, filter: &str) -> Result<String, String> {
    let access = parse_access(access)?;
    let text = read_text(path)?;
    let (out, gone) = remove_rule(&text, scope, access, filter)?;
    write_atomic(path, &out)?;
    let lines: Vec<String> = gone.iter().map(u32::to_string).collect();
    Ok(format!("removed line {} ({scope})\n", lines.join(", ")))
}

fn list(path: &Path, only: Option<&Scope>) -> Result<String, String> {
    let file = load(path)?;
    let mut out = String::new();
    for r in file
        .rules
        .iter()
        .filter(|r| only.is_none_or(|s| &r.scope == s))
    {
        out.push_str(&format!(
            "{:>5}  {:<24}  {r}\n",
            r.line,
            r.scope.to_string()
        ));
    }
    Ok(out)
}

/// (allowed, the explanation).
fn check(
    path: &Path,
    user: Option<&str>,
    client: &str,
    action: &str,
    topic: &str,
) -> Result<(bool, String), String> {
    let action = Action::from_word(action)
        .ok_or_else(|| format!("unknown action `{action}` (expected read, write or subscribe)"))?;
    let acl = Acl::compile(load(path)?);
    let who = match user {
        Some(u) => format!("user {u}, client id {client:?}"),
        None => format!("anonymous, client id {client:?}"),
    };
    let decision = acl
        .session(user.map(str::as_bytes), client.as_bytes())
        .check(action, topic.as_bytes());
    let verdict = if decision.allowed {
        "allowed"
    } else {
        "denied"
    };
    let text = match decision.rule.and_then(|id| acl.rule(id)) {
        Some(rule) => format!(
            "{verdict}: {} {topic} ({who}) by line {}: {} ({})",
            action.as_str(),
            rule.line,
            rule,
            rule.scope
        ),
        None => format!(
            "{verdict}: {} {topic} ({who}): no rule grants it (with an ACL file the default is deny)",
            action.as_str()
        ),
    };
    Ok((decision.allowed, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_ok(text: &str, scope: Scope, access: Access, filter: &str) -> String {
        add_rule(text, &scope, access, filter).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn add_places_rules_in_their_section() {
        let text =
            "# acl\ntopic read pub/#\n\nuser alice\ntopic read a/#\n\nuser bob\ntopic write b\n";
        let t = add_ok(text, Scope::User("alice".into()), Access::Write, "a/out");
        assert_eq!(
            t,
            "# acl\ntopic read pub/#\n\nuser alice\ntopic read a/#\ntopic write a/out\n\nuser bob\ntopic write b\n"
        );
        let t = add_ok(&t, Scope::Anonymous, Access::Deny, "pub/secret");
        assert!(
            t.starts_with("# acl\ntopic read pub/#\ntopic deny pub/secret\n\nuser alice"),
            "{t}"
        );
        let t = add_ok(&t, Scope::User("carol".into()), Access::Read, "c/#");
        assert!(
            t.ends_with("topic write b\n\nuser carol\ntopic read c/#\n"),
            "{t}"
        );
        let t = add_ok(&t, Scope::Pattern, Access::ReadWrite, "d/%c/#");
        assert!(t.ends_with("pattern readwrite d/%c/#\n"), "{t}");
        let t = add_ok(&t, Scope::Client("sensor 1".into()), Access::Write, "s/1");
        assert!(t.ends_with("\nclient sensor 1\ntopic write s/1\n"), "{t}");
        // Each added rule parses back into its scope.
        let f = parse(&t).unwrap_or_default();
        assert_eq!(f.rules.len(), 8);
        assert!(f
            .rules
            .iter()
            .any(|r| r.scope == Scope::Client("sensor 1".into())));
    }

    #[test]
    fn add_to_an_empty_file_and_anonymous_before_sections() {
        assert_eq!(
            add_ok("", Scope::Anonymous, Access::Read, "#"),
            "topic read #\n"
        );
        let t = add_ok(
            "user u\ntopic read x\n",
            Scope::Anonymous,
            Access::Read,
            "p",
        );
        assert_eq!(t, "topic read p\nuser u\ntopic read x\n");
        assert_eq!(
            parse(&t).map(|f| f.rules[0].scope.clone()),
            Ok(Scope::Anonymous)
        );
    }

    #[test]
    fn add_refuses_duplicates_bad_filters_and_bad_files() {
        let e = add_rule("topic read a\n", &Scope::Anonymous, Access::Read, "a").err();
        assert!(e.is_some_and(|e| e.contains("already there (line 1")));
        let e = add_rule("", &Scope::Anonymous, Access::Read, "a/#/b").err();
        assert!(
            e.is_some_and(|e| e.contains("invalid topic filter `a/#/b`")),
            ""
        );
        let e = add_rule("bogus\n", &Scope::Anonymous, Access::Read, "a").err();
        assert!(e.is_some_and(|e| e.contains("line 1: unknown keyword `bogus`")));
    }

    #[test]
    fn remove_takes_the_rule_out_of_its_section_only() {
        let text = "topic read a\nuser u\ntopic read a\ntopic write b\n";
        let (t, gone) = remove_rule(text, &Scope::User("u".into()), Access::Read, "a")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gone, [3]);
        assert_eq!(t, "topic read a\nuser u\ntopic write b\n");
        let e = remove_rule(text, &Scope::User("u".into()), Access::Deny, "a").err();
        assert_eq!(e.as_deref(), Some("no rule `topic deny a` for user u"));
    }

    #[test]
    fn text_that_cannot_round_trip_is_refused() {
        assert!(check_text("user name", " alice").is_err());
        assert!(check_text("user name", "a\nb").is_err());
        assert!(check_text("user name", "").is_err());
        assert!(check_text("user name", "al ice").is_ok());
    }
}
