//! `ringmq passwd`: create and edit a password file, the way
//! `mosquitto_passwd` does.
//!
//! ```text
//! ringmq passwd FILE USER                  add or change USER, prompt twice on the terminal
//! ringmq passwd --password-stdin FILE USER read the password from stdin (one line)
//! ringmq passwd -b FILE USER PASSWORD      batch: password on the command line
//! ringmq passwd -c FILE USER               create FILE (overwrite) with USER only
//! ringmq passwd -D FILE USER               delete USER
//! ringmq passwd --scram ...                also store SCRAM-SHA-256 credentials
//! ```
//!
//! The file is rewritten atomically (a temporary file in the same folder,
//! fsync, rename) with mode 0600; comments and the order of the other users
//! are kept. Every error names the file, the user or the line at fault.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ringmq_engine::auth::password::{
    format_line, hash_password, parse_lines, username_problem, Line, UserEntry, PASSWORD_MAX_BYTES,
};
use ringmq_engine::auth::scram::{self, ScramCredentials};

use crate::cli::PasswdArgs;

/// Runs the command; the error is the message to print.
pub fn run(args: &PasswdArgs) -> Result<String, String> {
    if let Some(reason) = username_problem(&args.user) {
        return Err(format!("bad user name {:?}: {reason}", args.user));
    }
    if args.password.is_some() && !args.batch {
        return Err("a password on the command line needs -b (batch mode)".into());
    }
    let file = args.file.display().to_string();
    let existing = if args.create {
        None
    } else {
        match fs::read(&args.file) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!(
                    "cannot read {file}: it does not exist (use -c to create it)"
                ))
            }
            Err(e) => return Err(format!("cannot read {file}: {e}")),
        }
    };
    let existing_bytes = existing.unwrap_or_default();
    let lines = parse_lines(&existing_bytes)
        .map_err(|e| format!("{file} is not a valid password file: {e}"))?;

    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 1);
    let mut found = false;
    let new_line = if args.delete {
        None
    } else {
        let password = read_password(args)?;
        Some(make_line(&args.user, &password, args.scram)?)
    };
    for line in &lines {
        match line {
            Line::User { name, .. } if *name == args.user => {
                found = true;
                if let Some(l) = &new_line {
                    out.push(l.clone());
                }
            }
            Line::User { name, entry } => out.push(format_line(name, entry)),
            Line::Other(text) => out.push((*text).to_string()),
        }
    }
    if args.delete && !found {
        return Err(format!("user {:?} is not in {file}", args.user));
    }
    if !found {
        if let Some(l) = new_line {
            out.push(l);
        }
    }
    let mut text = out.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    write_atomically(&args.file, text.as_bytes())
        .map_err(|e| format!("cannot write {file}: {e}"))?;
    Ok(match (args.delete, found) {
        (true, _) => format!("deleted user {:?} from {file}", args.user),
        (false, true) => format!("changed the password of {:?} in {file}", args.user),
        (false, false) => format!("added user {:?} to {file}", args.user),
    })
}

fn make_line(user: &str, password: &str, with_scram: bool) -> Result<String, String> {
    let salt: [u8; 16] = random_bytes()?;
    let phc = hash_password(password.as_bytes(), &salt).map_err(|e| format!("cannot hash: {e}"))?;
    let scram = if with_scram {
        let salt: [u8; scram::SALT_BYTES] = random_bytes()?;
        Some(ScramCredentials::derive(
            password.as_bytes(),
            &salt,
            scram::ITERATIONS_DEFAULT,
        ))
    } else {
        None
    };
    Ok(format_line(user, &UserEntry { phc, scram }))
}

fn check_password(password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err("empty password refused".into());
    }
    if password.len() > PASSWORD_MAX_BYTES {
        return Err(format!(
            "password is {} bytes, more than the limit of {PASSWORD_MAX_BYTES} bytes",
            password.len()
        ));
    }
    Ok(())
}

fn read_password(args: &PasswdArgs) -> Result<String, String> {
    let password = if args.batch {
        args.password
            .clone()
            .ok_or("batch mode (-b) needs the password as the third argument")?
    } else if args.password_stdin {
        let mut line = String::new();
        io::stdin()
            .lock()
            .take(PASSWORD_MAX_BYTES as u64 + 2)
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        let trimmed = line.strip_suffix('\n').unwrap_or(&line);
        trimmed.strip_suffix('\r').unwrap_or(trimmed).to_string()
    } else {
        if !io::stdin().is_terminal() {
            return Err(
                "no terminal to ask for the password on: use --password-stdin or -b".into(),
            );
        }
        let first = rpassword::prompt_password("Password: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        check_password(&first)?;
        let again = rpassword::prompt_password("Reenter password: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        if first != again {
            return Err("passwords do not match".into());
        }
        first
    };
    check_password(&password)?;
    Ok(password)
}

/// `N` bytes from the operating system's random source.
fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut buf = [0u8; N];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("cannot read random bytes from /dev/urandom: {e}"))?;
    Ok(buf)
}

/// Writes `bytes` to `path` through a temporary file in the same folder
/// (mode 0600, fsynced) renamed over it: a reader sees the old or the new
/// file, never a half-written one.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename is durable once the folder is synced.
        fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        if let Err(e) = fs::remove_file(&tmp) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("ringmq: cannot remove {}: {e}", tmp.display());
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmq_engine::auth::UserStore;
    use std::os::unix::fs::PermissionsExt;

    fn args(file: &Path, user: &str, password: Option<&str>) -> PasswdArgs {
        PasswdArgs {
            create: false,
            delete: false,
            batch: password.is_some(),
            password_stdin: false,
            scram: false,
            file: file.to_path_buf(),
            user: user.into(),
            password: password.map(str::to_string),
        }
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringmq-passwd-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let p = dir.join(name);
        if let Err(e) = fs::remove_file(&p) {
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        }
        p
    }

    #[test]
    fn create_add_change_delete_keeps_comments_and_mode_0600() {
        let f = temp("edit");
        let mut a = args(&f, "alice", Some("one"));
        let e = run(&a).err().unwrap_or_default();
        assert!(e.contains("does not exist (use -c"), "{e}");
        a.create = true;
        assert!(run(&a).is_ok());
        let mode = fs::metadata(&f)
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o600));
        let mut text = fs::read_to_string(&f).unwrap_or_default();
        text.insert_str(0, "# ops team\n");
        fs::write(&f, &text).unwrap_or_else(|e| panic!("{e}"));
        let mut b = args(&f, "bob", Some("two"));
        b.scram = true;
        assert!(run(&b).is_ok());
        assert!(run(&args(&f, "alice", Some("three"))).is_ok());
        let text = fs::read(&f).unwrap_or_default();
        assert!(text.starts_with(b"# ops team\nalice:"));
        let store = UserStore::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert!(store.verify(b"alice", b"three"));
        assert!(!store.verify(b"alice", b"one"));
        assert!(store.verify(b"bob", b"two"));
        assert!(store.get(b"bob").is_some_and(|u| u.scram.is_some()));
        assert!(store.get(b"alice").is_some_and(|u| u.scram.is_none()));

        let mut d = args(&f, "alice", None);
        d.delete = true;
        assert!(run(&d).is_ok());
        let e = run(&d).err().unwrap_or_default();
        assert!(e.contains("user \"alice\" is not in"), "{e}");
        let store =
            UserStore::parse(&fs::read(&f).unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn bad_names_passwords_and_files_are_named() {
        let f = temp("bad");
        let mut a = args(&f, "a:b", Some("pw"));
        a.create = true;
        let e = run(&a).err().unwrap_or_default();
        assert!(e.contains("bad user name \"a:b\""), "{e}");
        let mut a = args(&f, "a", Some(""));
        a.create = true;
        assert_eq!(run(&a).err().as_deref(), Some("empty password refused"));
        fs::write(&f, "alice:nothash\n").unwrap_or_else(|e| panic!("{e}"));
        let e = run(&args(&f, "bob", Some("pw"))).err().unwrap_or_default();
        assert!(
            e.contains("is not a valid password file: line 1: bad password hash"),
            "{e}"
        );
    }
}
