//! The `key = value` options each attribute takes.
//!
//! Every option has its own setter that rejects a second occurrence, and an
//! unknown key names the keys that are accepted.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Ident, LitBool, LitStr};

/// Options of `#[manhole::command(...)]` and `#[manhole::inspect(...)]`.
#[derive(Default)]
pub(crate) struct ItemArgs {
    pub(crate) name: Option<LitStr>,
    /// `inspect(calls)`: count and time the function's calls.
    pub(crate) calls: Option<Ident>,
    /// `inspect(writable)`: let `set` replace the static's value.
    pub(crate) writable: Option<Ident>,
    /// `inspect(calls, args)`: show each in-flight call's arguments.
    pub(crate) args: Option<Ident>,
    /// Which of them, as `args(...)` says; every one for a bare `args`.
    pub(crate) shown: ArgsShown,
    /// `args(..., fields(key = self.key))`: values computed from the
    /// arguments, shown after them, as `tracing::instrument`'s `fields`.
    pub(crate) fields: Vec<Field>,
}

/// One `NAME = EXPR` of `fields(...)`.
pub(crate) struct Field {
    pub(crate) name: Ident,
    pub(crate) value: syn::Expr,
}

/// Which arguments `inspect(calls, args...)` shows, as
/// `tracing::instrument` chooses its fields.
#[derive(Default)]
pub(crate) enum ArgsShown {
    /// `args`: every parameter, and `self` when it is `Debug`.
    #[default]
    All,
    /// `args(a, self)`: these, in the order of the signature.
    Only(Vec<Ident>),
    /// `args(skip(db, dst))`: all but these.
    Skip(Vec<Ident>),
    /// `args(skip_all)`: none.
    SkipAll,
}

/// Options of `#[manhole::main(...)]`.
#[derive(Default)]
pub(crate) struct MainArgs {
    pub(crate) socket_path: Option<LitStr>,
    pub(crate) verbose: Option<LitBool>,
    pub(crate) activate_on: Option<LitStr>,
    pub(crate) oneshot_on: Option<LitStr>,
    pub(crate) sigmask: Option<LitBool>,
    pub(crate) reinstall_on_fork: Option<LitBool>,
    pub(crate) reinstall_delay_ms: Option<syn::LitInt>,
    pub(crate) command_timeout_ms: Option<syn::LitInt>,
    pub(crate) slow_poll_ms: Option<syn::LitInt>,
    pub(crate) crash_report: Option<LitBool>,
    pub(crate) crash_file: Option<LitStr>,
    pub(crate) crash_timeout_ms: Option<syn::LitInt>,
    pub(crate) watchdog_ms: Option<syn::LitInt>,
    pub(crate) stuck_call_ms: Option<syn::LitInt>,
    pub(crate) watchdog_stacks: Option<LitStr>,
    pub(crate) max_reply_bytes: Option<syn::LitInt>,
    /// The keys in the order they were written, so that an error about two
    /// options that cannot go together points at the later one.
    pub(crate) keys: Vec<Ident>,
}

const COMMAND_KEYS: &[&str] = &["name"];
const INSPECT_KEYS: &[&str] = &["name", "calls", "writable", "args"];

/// Reads the value of one `main` option, given its key, into `MainArgs`.
type SetMainOption = fn(&mut MainArgs, &ParseNestedMeta<'_>, &str) -> syn::Result<()>;

/// The options of `#[manhole::main]`, in the order an unknown key lists them.
const MAIN_OPTIONS: &[(&str, SetMainOption)] = &[
    ("socket_path", |args, meta, key| {
        set_once(
            &mut args.socket_path,
            meta,
            key,
            "a string",
            "\"/run/myapp/manhole\"",
        )
    }),
    ("verbose", |args, meta, key| {
        set_once(&mut args.verbose, meta, key, "`true` or `false`", "false")
    }),
    ("activate_on", |args, meta, key| {
        set_once(
            &mut args.activate_on,
            meta,
            key,
            "a signal name",
            "\"USR1\"",
        )
    }),
    ("oneshot_on", |args, meta, key| {
        set_once(&mut args.oneshot_on, meta, key, "a signal name", "\"USR2\"")
    }),
    ("sigmask", |args, meta, key| {
        set_once(&mut args.sigmask, meta, key, "`true` or `false`", "false")
    }),
    ("reinstall_on_fork", |args, meta, key| {
        set_once(
            &mut args.reinstall_on_fork,
            meta,
            key,
            "`true` or `false`",
            "false",
        )
    }),
    ("reinstall_delay_ms", |args, meta, key| {
        set_once(
            &mut args.reinstall_delay_ms,
            meta,
            key,
            "a number of milliseconds",
            "500",
        )
    }),
    ("command_timeout_ms", |args, meta, key| {
        set_once(
            &mut args.command_timeout_ms,
            meta,
            key,
            "a number of milliseconds",
            "30000",
        )
    }),
    ("slow_poll_ms", |args, meta, key| {
        set_once(
            &mut args.slow_poll_ms,
            meta,
            key,
            "a number of milliseconds",
            "250",
        )
    }),
    ("crash_report", |args, meta, key| {
        set_once(
            &mut args.crash_report,
            meta,
            key,
            "`true` or `false`",
            "false",
        )
    }),
    ("crash_file", |args, meta, key| {
        set_once(
            &mut args.crash_file,
            meta,
            key,
            "a string",
            "\"/var/log/myapp/crash-{pid}.txt\"",
        )
    }),
    ("crash_timeout_ms", |args, meta, key| {
        set_once(
            &mut args.crash_timeout_ms,
            meta,
            key,
            "a number of milliseconds",
            "10000",
        )
    }),
    ("watchdog_ms", |args, meta, key| {
        set_once(
            &mut args.watchdog_ms,
            meta,
            key,
            "a number of milliseconds",
            "500",
        )
    }),
    ("stuck_call_ms", |args, meta, key| {
        set_once(
            &mut args.stuck_call_ms,
            meta,
            key,
            "a number of milliseconds",
            "5000",
        )
    }),
    ("watchdog_stacks", |args, meta, key| {
        set_once(
            &mut args.watchdog_stacks,
            meta,
            key,
            "\"short\", \"full\" or \"none\"",
            "\"full\"",
        )
    }),
    ("max_reply_bytes", |args, meta, key| {
        set_once(
            &mut args.max_reply_bytes,
            meta,
            key,
            "a number of bytes",
            "16777216",
        )
    }),
];

impl ItemArgs {
    pub(crate) fn parse_command(tokens: TokenStream) -> syn::Result<Self> {
        Self::parse(tokens, COMMAND_KEYS)
    }

    pub(crate) fn parse_inspect(tokens: TokenStream) -> syn::Result<Self> {
        Self::parse(tokens, INSPECT_KEYS)
    }

    fn parse(tokens: TokenStream, keys: &[&str]) -> syn::Result<Self> {
        let mut args = Self::default();
        syn::meta::parser(|meta| {
            let key = meta.path.get_ident().map(ToString::to_string);
            match key.as_deref().filter(|key| keys.contains(key)) {
                Some("name") => set_once(&mut args.name, &meta, "name", "a string", "\"reload\""),
                Some("calls") => set_flag(&mut args.calls, &meta, "calls"),
                Some("writable") => set_flag(&mut args.writable, &meta, "writable"),
                Some("args") if meta.input.peek(syn::token::Paren) => {
                    if args.args.is_some() {
                        return Err(meta.error("duplicate option `args`; give each option once"));
                    }
                    args.args = meta.path.get_ident().cloned();
                    (args.shown, args.fields) = parse_args_shown(&meta)?;
                    Ok(())
                }
                Some("args") => set_flag(&mut args.args, &meta, "args"),
                _ => Err(unknown_key(&meta, keys.iter().copied())),
            }
        })
        .parse2(tokens)?;
        Ok(args)
    }
}

/// `args(a, self)`, `args(skip(db, dst))` or `args(skip_all)`, each
/// with `fields(NAME = EXPR, ...)` if wanted.
fn parse_args_shown(meta: &ParseNestedMeta<'_>) -> syn::Result<(ArgsShown, Vec<Field>)> {
    let mut only = Vec::new();
    let mut skip: Option<Vec<Ident>> = None;
    let mut skip_all = None;
    let mut fields = Vec::new();
    meta.parse_nested_meta(|inner| {
        let Some(ident) = inner.path.get_ident().cloned() else {
            return Err(inner.error(
                "expected a parameter's name, `self`, `skip(NAME, ...)`, `skip_all` or `fields(NAME = EXPR, ...)`, as in `args(skip(db))`",
            ));
        };
        if ident == "fields" && inner.input.peek(syn::token::Paren) {
            inner.parse_nested_meta(|field| {
                let Some(name) = field.path.get_ident().cloned() else {
                    return Err(field.error("expected a field's name, as in `fields(key = self.key)`"));
                };
                if !field.input.peek(syn::Token![=]) {
                    return Err(field.error(format!(
                        "`{name}` needs a value: write `fields({name} = EXPR)`, as in `fields(key = self.key)`"
                    )));
                }
                let value = field.value()?.parse()?;
                fields.push(Field { name, value });
                Ok(())
            })
        } else if ident == "skip" && inner.input.peek(syn::token::Paren) {
            let names = skip.get_or_insert_with(Vec::new);
            inner.parse_nested_meta(|name| {
                match name.path.get_ident() {
                    Some(ident) => names.push(ident.clone()),
                    None => return Err(name.error("expected a parameter's name, as in `skip(db)`")),
                }
                Ok(())
            })
        } else if ident == "skip_all" {
            skip_all = Some(ident);
            Ok(())
        } else {
            only.push(ident);
            Ok(())
        }
    })?;
    let conflict = |what: &str| {
        meta.error(format!(
            "`args({what})` cannot be combined with naming the parameters to show; name them, or skip some, or skip all"
        ))
    };
    let shown = match (only.is_empty(), skip, skip_all) {
        // `args(fields(...))` alone shows the fields only.
        (true, None, None) if !fields.is_empty() => ArgsShown::SkipAll,
        (true, None, None) => ArgsShown::All,
        (true, Some(skip), None) => ArgsShown::Skip(skip),
        (true, None, Some(_)) => ArgsShown::SkipAll,
        (false, None, None) => ArgsShown::Only(only),
        (_, Some(_), _) => return Err(conflict("skip(...)")),
        (_, _, Some(_)) => return Err(conflict("skip_all")),
    };
    Ok((shown, fields))
}

/// A bare word such as `calls`: it takes no value.
fn set_flag(slot: &mut Option<Ident>, meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<()> {
    if slot.is_some() {
        return Err(meta.error(format!("duplicate option `{key}`; give each option once")));
    }
    if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
        return Err(meta.error(format!(
            "`{key}` takes no value; write `#[manhole::inspect({key})]`"
        )));
    }
    *slot = meta.path.get_ident().cloned();
    Ok(())
}

impl MainArgs {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut args = Self::default();
        syn::meta::parser(|meta| {
            let option = MAIN_OPTIONS.iter().find(|(key, _)| meta.path.is_ident(key));
            let Some((key, set)) = option else {
                return Err(unknown_key(&meta, MAIN_OPTIONS.iter().map(|(key, _)| *key)));
            };
            set(&mut args, &meta, key)?;
            args.keys.extend(meta.path.get_ident().cloned());
            Ok(())
        })
        .parse2(tokens)?;
        Ok(args)
    }
}

/// A `key = value` option, which may be given once; `sample` is a value to
/// show in the error when it is missing or of the wrong type.
fn set_once<T: syn::parse::Parse>(
    slot: &mut Option<T>,
    meta: &ParseNestedMeta<'_>,
    key: &str,
    expected: &str,
    sample: &str,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(meta.error(format!("duplicate option `{key}`; give each option once")));
    }
    let example = format!("{key} = {sample}");
    let value = meta
        .value()
        .map_err(|_| meta.error(format!("option `{key}` needs a value, as in `{example}`")))?;
    let parsed = value.parse::<T>().map_err(|err| {
        syn::Error::new(
            err.span(),
            format!("expected {expected} for `{key}`, as in `{example}`"),
        )
    })?;
    *slot = Some(parsed);
    Ok(())
}

fn unknown_key<'a>(
    meta: &ParseNestedMeta<'_>,
    expected: impl IntoIterator<Item = &'a str>,
) -> syn::Error {
    let key = meta
        .path
        .get_ident()
        .map_or_else(|| render::tokens(&meta.path), ToString::to_string);
    let expected = expected
        .into_iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ");
    syn::Error::new_spanned(
        &meta.path,
        format!("unknown option `{key}`; expected one of: {expected}"),
    )
}

use crate::render;
