//! useradd's rule for user and group names (shadow 4.13, Debian 12: `is_valid_user_name` in
//! `libmisc/chkname.c`, without `--badname`), which kiln applies to the deploy user and file owners.

/// POSIX portable user name, as `useradd` on Debian accepts without `--badname`.
pub fn check_user_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else { return Err("it is empty") };
    if name.len() > 32 {
        return Err("it is longer than 32 characters");
    }
    if !(first.is_ascii_lowercase() || first == '_') {
        return Err("it must start with a lowercase letter or `_`");
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
        return Err("only lowercase letters, digits, `_` and `-` are allowed");
    }
    Ok(())
}
