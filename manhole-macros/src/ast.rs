//! Typed views of the items the attributes are placed on.
//!
//! They borrow from the parsed `syn` item so that every later error can point
//! at the original token.

use syn::{
    Attribute, FnArg, GenericArgument, Ident, Item, ItemFn, ItemStatic, Pat, PathArguments, Type,
};

/// A function's parameter as the manhole sees it.
pub(crate) struct Param<'a> {
    pub(crate) arg: &'a FnArg,
    /// `None` when the pattern is not a plain name; validation reports it.
    pub(crate) ident: Option<&'a Ident>,
    pub(crate) ty: &'a Type,
    /// The `T` of an `Option<T>` parameter.
    pub(crate) optional: Option<&'a Type>,
}

/// A function under `#[manhole::command]` or `#[manhole::inspect]`.
pub(crate) struct Function<'a> {
    pub(crate) item: &'a ItemFn,
    pub(crate) params: Vec<Param<'a>>,
    pub(crate) doc: String,
}

/// A static under `#[manhole::inspect]`.
pub(crate) struct Static<'a> {
    pub(crate) item: &'a ItemStatic,
    pub(crate) doc: String,
}

impl<'a> Function<'a> {
    pub(crate) fn from_item(item: &'a ItemFn) -> Self {
        let params = item
            .sig
            .inputs
            .iter()
            .filter_map(|arg| match arg {
                FnArg::Typed(typed) => Some(Param {
                    arg,
                    ident: match &*typed.pat {
                        Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                            Some(&pat.ident)
                        }
                        _ => None,
                    },
                    ty: &typed.ty,
                    optional: option_inner(&typed.ty),
                }),
                FnArg::Receiver(_) => None,
            })
            .collect();
        Function {
            item,
            params,
            doc: doc_text(&item.attrs),
        }
    }
}

impl<'a> Static<'a> {
    pub(crate) fn from_item(item: &'a ItemStatic) -> Self {
        Static {
            item,
            doc: doc_text(&item.attrs),
        }
    }
}

/// What the attribute was placed on, with the keyword to point at when that
/// kind of item is not accepted.
pub(crate) fn describe(item: &Item) -> (&'static str, proc_macro2::TokenStream) {
    use quote::ToTokens;
    match item {
        Item::Struct(it) => ("a struct", it.struct_token.to_token_stream()),
        Item::Enum(it) => ("an enum", it.enum_token.to_token_stream()),
        Item::Union(it) => ("a union", it.union_token.to_token_stream()),
        Item::Const(it) => ("a const", it.const_token.to_token_stream()),
        Item::Static(it) => ("a static", it.static_token.to_token_stream()),
        Item::Fn(it) => ("a function", it.sig.fn_token.to_token_stream()),
        Item::Impl(it) => ("an impl block", it.impl_token.to_token_stream()),
        Item::Trait(it) => ("a trait", it.trait_token.to_token_stream()),
        Item::Mod(it) => ("a module", it.mod_token.to_token_stream()),
        Item::Type(it) => ("a type alias", it.type_token.to_token_stream()),
        Item::Use(it) => ("a use declaration", it.use_token.to_token_stream()),
        other => ("this item", other.to_token_stream()),
    }
}

/// `ty` with every `impl Trait` in it replaced by `_`, which a closure's
/// return type may say (and `impl Trait` may not there).
pub(crate) fn impl_trait_inferred(ty: &Type) -> Type {
    struct Inferred;
    impl syn::visit_mut::VisitMut for Inferred {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(impl_trait) = ty {
                *ty = Type::Infer(syn::TypeInfer {
                    underscore_token: syn::Token![_](syn::spanned::Spanned::span(impl_trait)),
                });
            } else {
                syn::visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    let mut ty = ty.clone();
    syn::visit_mut::VisitMut::visit_type_mut(&mut Inferred, &mut ty);
    ty
}

/// `T` when `ty` is written `Option<T>` (or with a path such as
/// `std::option::Option<T>`).
fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != "Option" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first() {
        Some(GenericArgument::Type(inner)) if args.args.len() == 1 => Some(inner),
        _ => None,
    }
}

/// The doc comment, one line per `///` line, with the conventional single
/// leading space removed.
fn doc_text(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .filter_map(|attr| match &attr.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(text),
                    ..
                }) => Some(text.value()),
                _ => None,
            },
            _ => None,
        })
        .flat_map(|text| {
            text.lines()
                .map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let first = lines.iter().position(|line| !line.is_empty());
    let last = lines.iter().rposition(|line| !line.is_empty());
    match (first, last) {
        (Some(first), Some(last)) => lines[first..=last].join("\n"),
        _ => String::new(),
    }
}
