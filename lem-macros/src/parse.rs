//! Stage 1: parse `#[energy_bench(option = value, ...)]`.

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, Token};

/// Every option, in the order the docs list them.
pub const VALID: &[&str] = &[
    "cv",
    "window",
    "min_warmup",
    "max_warmup",
    "warmup",
    "warmup_iters",
    "samples",
    "min_sample_s",
    "max_uncertainty",
    "max_time_s",
    "cooldown_c",
    "cooldown_timeout_s",
    "on_throttle",
    "cycles",
    "cycle_gap_s",
    "units",
    "device",
    "ignore",
    "name",
    "seed",
    "random_start",
    "args",
];

/// One `name = value` (or bare `name`).
struct RawOption {
    name: Ident,
    value: Option<Expr>,
}

impl Parse for RawOption {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let name: Ident = input.parse()?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Self { name, value })
    }
}

struct RawOptions(Punctuated<RawOption, Token![,]>);

impl Parse for RawOptions {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        Ok(Self(Punctuated::parse_terminated(input)?))
    }
}

/// The validated options.
#[derive(Default)]
pub struct Options {
    pub cv: Option<f64>,
    pub window: Option<u64>,
    pub min_warmup: Option<u64>,
    pub max_warmup: Option<u64>,
    pub warmup_fixed: Option<bool>,
    pub warmup_iters: Option<u64>,
    pub samples: Option<u64>,
    pub min_sample_s: Option<f64>,
    pub max_uncertainty: Option<f64>,
    pub max_time_s: Option<f64>,
    pub cooldown_c: Option<f64>,
    pub cooldown_timeout_s: Option<f64>,
    /// 0 continue, 1 discard, 2 abort.
    pub on_throttle: Option<u8>,
    pub cycles: Option<u64>,
    pub cycle_gap_s: Option<f64>,
    pub units: Option<String>,
    pub device: Option<String>,
    pub ignore: bool,
    pub name: Option<String>,
    pub seed: Option<u64>,
    pub random_start: Option<bool>,
    /// The argument expressions and the span of the `args` key.
    pub args: Option<(Vec<Expr>, Span)>,
}

fn lit(e: &Expr) -> Option<&Lit> {
    match e {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(g) => lit(&g.expr),
        _ => None,
    }
}

fn need_value(o: &RawOption, what: &str) -> syn::Result<Expr> {
    o.value.clone().ok_or_else(|| {
        syn::Error::new(
            o.name.span(),
            format!("option `{}` needs a value: `{} = {what}`", o.name, o.name),
        )
    })
}

fn number(o: &RawOption) -> syn::Result<f64> {
    let e = need_value(o, "a number")?;
    let v = match lit(&e) {
        Some(Lit::Float(f)) => f.base10_parse::<f64>()?,
        Some(Lit::Int(i)) => i.base10_parse::<u64>()? as f64,
        _ => {
            return Err(syn::Error::new_spanned(
                &e,
                format!(
                    "option `{}` expects a non-negative number, like `{} = 0.05`",
                    o.name, o.name
                ),
            ))
        }
    };
    if !v.is_finite() {
        return Err(syn::Error::new_spanned(
            &e,
            format!("option `{}` must be finite", o.name),
        ));
    }
    Ok(v)
}

fn integer(o: &RawOption) -> syn::Result<u64> {
    let e = need_value(o, "an integer")?;
    match lit(&e) {
        Some(Lit::Int(i)) => i.base10_parse::<u64>(),
        _ => Err(syn::Error::new_spanned(
            &e,
            format!(
                "option `{}` expects a whole number, like `{} = 10`",
                o.name, o.name
            ),
        )),
    }
}

fn string(o: &RawOption) -> syn::Result<(String, Expr)> {
    let e = need_value(o, "\"...\"")?;
    match lit(&e) {
        Some(Lit::Str(s)) => Ok((s.value(), e)),
        _ => Err(syn::Error::new_spanned(
            &e,
            format!(
                "option `{}` expects a string literal, like `{} = \"...\"`",
                o.name, o.name
            ),
        )),
    }
}

/// Parse and type-check the options; every problem is reported, each at its token.
pub fn parse_options(attr: TokenStream) -> syn::Result<Options> {
    let raw: RawOptions = syn::parse2(attr)?;
    let mut out = Options::default();
    let mut seen: Vec<String> = Vec::new();
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match errors.as_mut() {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    for o in raw.0.iter() {
        let key = o.name.to_string();
        if !VALID.contains(&key.as_str()) {
            push(syn::Error::new(
                o.name.span(),
                format!(
                    "unknown option `{key}`; valid options are: {}",
                    VALID.join(", ")
                ),
            ));
            continue;
        }
        if seen.contains(&key) {
            push(syn::Error::new(
                o.name.span(),
                format!("option `{key}` is given more than once"),
            ));
            continue;
        }
        seen.push(key.clone());
        let r: syn::Result<()> = (|| {
            match key.as_str() {
                "cv" => {
                    let v = number(o)?;
                    if v <= 0.0 {
                        return Err(syn::Error::new(o.name.span(), "option `cv` must be > 0"));
                    }
                    out.cv = Some(v);
                }
                "min_sample_s" => out.min_sample_s = Some(number(o)?),
                "max_uncertainty" => {
                    let v = number(o)?;
                    if !(v > 0.0 && v < 1.0) {
                        return Err(syn::Error::new(
                                o.name.span(),
                                "option `max_uncertainty` is a fraction of the energy: > 0 and < 1 (0.01 = 1 %)",
                            ));
                    }
                    out.max_uncertainty = Some(v);
                }
                "max_time_s" => {
                    let v = number(o)?;
                    if !(v > 0.0 && v.is_finite()) {
                        return Err(syn::Error::new(
                            o.name.span(),
                            "option `max_time_s` is a positive number of seconds",
                        ));
                    }
                    out.max_time_s = Some(v);
                }
                "cooldown_c" | "cooldown_timeout_s" => {
                    let v = number(o)?;
                    if !(v >= 0.0 && v.is_finite()) {
                        return Err(syn::Error::new(
                            o.name.span(),
                            format!(
                                "option `{key}` is a number of {} (>= 0)",
                                if key == "cooldown_c" {
                                    "degrees Celsius"
                                } else {
                                    "seconds"
                                }
                            ),
                        ));
                    }
                    if key == "cooldown_c" {
                        out.cooldown_c = Some(v);
                    } else {
                        out.cooldown_timeout_s = Some(v);
                    }
                }
                "on_throttle" => {
                    let (s, e) = string(o)?;
                    out.on_throttle =
                        Some(match s.as_str() {
                            "continue" => 0,
                            "discard" => 1,
                            "abort" => 2,
                            _ => return Err(syn::Error::new_spanned(
                                e,
                                "option `on_throttle` is \"continue\", \"discard\" or \"abort\"",
                            )),
                        });
                }
                "cycle_gap_s" => out.cycle_gap_s = Some(number(o)?),
                "window" => out.window = Some(integer(o)?),
                "min_warmup" => out.min_warmup = Some(integer(o)?),
                "max_warmup" => out.max_warmup = Some(integer(o)?),
                "warmup_iters" => out.warmup_iters = Some(integer(o)?),
                "samples" => {
                    let n = integer(o)?;
                    if n == 0 {
                        return Err(syn::Error::new(
                            o.name.span(),
                            "option `samples` must be at least 1",
                        ));
                    }
                    out.samples = Some(n);
                }
                "seed" => out.seed = Some(integer(o)?),
                "random_start" => {
                    out.random_start = Some(match o.value.as_ref().map(lit) {
                        Some(Some(Lit::Bool(b))) => b.value,
                        _ => {
                            return Err(syn::Error::new(
                                o.name.span(),
                                "option `random_start` is `true` or `false`",
                            ))
                        }
                    })
                }
                "cycles" => {
                    let n = integer(o)?;
                    if n == 0 {
                        return Err(syn::Error::new(
                            o.name.span(),
                            "option `cycles` must be at least 1",
                        ));
                    }
                    out.cycles = Some(n);
                }
                "warmup" => {
                    let (s, e) = string(o)?;
                    out.warmup_fixed = Some(match s.as_str() {
                        "converge" => false,
                        "fixed" => true,
                        _ => {
                            return Err(syn::Error::new_spanned(
                                e,
                                "option `warmup` is \"converge\" or \"fixed\"",
                            ))
                        }
                    });
                }
                "units" => out.units = Some(string(o)?.0),
                "device" => out.device = Some(string(o)?.0),
                "name" => out.name = Some(string(o)?.0),
                "ignore" => {
                    out.ignore = match &o.value {
                        None => true,
                        Some(e) => match lit(e) {
                            Some(Lit::Bool(b)) => b.value,
                            _ => {
                                return Err(syn::Error::new_spanned(
                                    e,
                                    "option `ignore` is a flag: `ignore` or `ignore = true`",
                                ))
                            }
                        },
                    }
                }
                "args" => {
                    let e = need_value(o, "[1, 8, 32]")?;
                    match e {
                        Expr::Array(a) if !a.elems.is_empty() => {
                            out.args = Some((a.elems.into_iter().collect(), o.name.span()));
                        }
                        other => {
                            return Err(syn::Error::new_spanned(
                                other,
                                "option `args` expects a non-empty array, like `args = [1, 8, 32]`",
                            ))
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        })();
        if let Err(e) = r {
            push(e);
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
