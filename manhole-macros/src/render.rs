//! Tokens written back as the compact Rust a person would type, for help text
//! and signatures: `Result<String, std::io::Error>`, not
//! `Result < String , std :: io :: Error >`.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::ToTokens;

pub(crate) fn tokens<T: ToTokens>(node: &T) -> String {
    let mut out = String::new();
    write_stream(node.to_token_stream(), &mut out);
    out
}

fn write_stream(stream: TokenStream, out: &mut String) {
    // A space separates two words (`dyn Trait`, `&'a mut T`); punctuation
    // glues, except the few marks people write with spaces around them.
    let mut after_word = false;
    let mut after_keyword = false;
    let mut in_lifetime = false;
    for tree in stream {
        match tree {
            TokenTree::Ident(_) | TokenTree::Literal(_) => {
                if after_word && !in_lifetime {
                    out.push(' ');
                }
                let word = tree.to_string();
                after_keyword = matches!(word.as_str(), "mut" | "dyn" | "impl" | "const");
                out.push_str(&word);
                after_word = true;
                in_lifetime = false;
            }
            TokenTree::Punct(punct) => {
                match punct.as_char() {
                    ',' | ';' => out.push_str(&format!("{} ", punct.as_char())),
                    // A lone `:` separates a name from its type; `::` glues.
                    ':' if punct.spacing() == Spacing::Alone && !out.ends_with(':') => {
                        out.push_str(": ");
                    }
                    '-' if punct.spacing() == Spacing::Joint => out.push_str(" -"),
                    '>' if out.ends_with(" -") => out.push_str("> "),
                    '=' | '+' => out.push_str(&format!(" {} ", punct.as_char())),
                    '\'' => {
                        if after_word {
                            out.push(' ');
                        }
                        out.push('\'');
                    }
                    other => out.push(other),
                }
                in_lifetime = punct.as_char() == '\'';
                after_word = in_lifetime;
                after_keyword = false;
            }
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::Brace => ("{ ", " }"),
                    Delimiter::None => ("", ""),
                };
                // `&mut [u8]` and `dyn (Trait)` are spaced; `Fn(i32)` is not.
                if after_keyword || (after_word && group.delimiter() == Delimiter::Brace) {
                    out.push(' ');
                }
                out.push_str(open);
                write_stream(group.stream(), out);
                out.push_str(close);
                after_word = true;
                after_keyword = false;
                in_lifetime = false;
            }
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
}

#[cfg(test)]
mod tests {
    use super::tokens;

    fn ty(text: &str) -> String {
        tokens(&syn::parse_str::<syn::Type>(text).unwrap())
    }

    #[test]
    fn types_read_as_written() {
        assert_eq!(
            ty("Result < String , std :: io :: Error >"),
            "Result<String, std::io::Error>"
        );
        assert_eq!(ty("& 'static str"), "&'static str");
        assert_eq!(ty("&mut [u8]"), "&mut [u8]");
        assert_eq!(
            ty("Box<dyn Fn(i32) -> i32 + Send>"),
            "Box<dyn Fn(i32) -> i32 + Send>"
        );
        assert_eq!(ty("[u8; 4]"), "[u8; 4]");
        assert_eq!(ty("(u8, String)"), "(u8, String)");
        assert_eq!(ty("Vec<Option<i64>>"), "Vec<Option<i64>>");
    }

    #[test]
    fn parameters_read_as_written() {
        let sig: syn::Signature =
            syn::parse_str("fn f(&mut self, key: usize, path: std::path::PathBuf)").unwrap();
        assert_eq!(
            tokens(&sig.inputs),
            "&mut self, key: usize, path: std::path::PathBuf"
        );
    }
}
