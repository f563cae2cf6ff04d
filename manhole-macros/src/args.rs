//! The `key = value` options each attribute takes.
//!
//! Every option has its own setter that rejects a second occurrence, and an
//! unknown key names the keys that are accepted.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{LitBool, LitStr};

/// Options of `#[manhole::command(...)]` and `#[manhole::inspect(...)]`.
#[derive(Default)]
pub(crate) struct ItemArgs {
    pub(crate) name: Option<LitStr>,
}

/// Options of `#[manhole::main(...)]`.
#[derive(Default)]
pub(crate) struct MainArgs {
    pub(crate) socket_path: Option<LitStr>,
    pub(crate) verbose: Option<LitBool>,
}

const ITEM_KEYS: &[&str] = &["name"];
const MAIN_KEYS: &[&str] = &["socket_path", "verbose"];

impl ItemArgs {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut args = Self::default();
        syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                set_once(
                    &mut args.name,
                    &meta,
                    "name",
                    "a string",
                    "name = \"reload\"",
                )
            } else {
                Err(unknown_key(&meta, ITEM_KEYS))
            }
        })
        .parse2(tokens)?;
        Ok(args)
    }
}

impl MainArgs {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut args = Self::default();
        syn::meta::parser(|meta| {
            if meta.path.is_ident("socket_path") {
                set_once(
                    &mut args.socket_path,
                    &meta,
                    "socket_path",
                    "a string",
                    "socket_path = \"/run/myapp/manhole\"",
                )
            } else if meta.path.is_ident("verbose") {
                set_once(
                    &mut args.verbose,
                    &meta,
                    "verbose",
                    "`true` or `false`",
                    "verbose = false",
                )
            } else {
                Err(unknown_key(&meta, MAIN_KEYS))
            }
        })
        .parse2(tokens)?;
        Ok(args)
    }
}

fn set_once<T: syn::parse::Parse>(
    slot: &mut Option<T>,
    meta: &ParseNestedMeta<'_>,
    key: &str,
    expected: &str,
    example: &str,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(meta.error(format!("duplicate option `{key}`; give each option once")));
    }
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

fn unknown_key(meta: &ParseNestedMeta<'_>, expected: &[&str]) -> syn::Error {
    let key = meta
        .path
        .get_ident()
        .map_or_else(|| render::tokens(&meta.path), ToString::to_string);
    let expected = expected
        .iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ");
    syn::Error::new_spanned(
        &meta.path,
        format!("unknown option `{key}`; expected one of: {expected}"),
    )
}

use crate::render;
