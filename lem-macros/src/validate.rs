//! Stage 2: check that the function has a shape the harness can run.

use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Type};

use crate::parse::Options;

/// How the harness calls the function.
pub enum Shape {
    /// `fn f() -> T`: the harness times `f()`.
    Plain,
    /// `fn f(x: T)` with `args = [...]`.
    Arg(Box<Type>),
    /// `fn f(b: &mut Bencher)`: the function drives the measurement.
    Bencher,
    /// `fn f(b: &mut Bencher, x: T)` with `args = [...]`.
    BencherArg(Box<Type>),
}

fn is_bencher(t: &Type) -> bool {
    match t {
        Type::Reference(r) => {
            r.mutability.is_some()
                && matches!(&*r.elem, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Bencher"))
        }
        _ => false,
    }
}

/// Check the signature against the options.
pub fn validate(f: &ItemFn, opts: Option<&Options>) -> syn::Result<Shape> {
    let sig = &f.sig;
    if let Some(a) = &sig.asyncness {
        return Err(syn::Error::new(
            a.span(),
            "#[energy_bench] does not support `async fn`: block on your runtime inside a synchronous benchmark function",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "#[energy_bench] functions cannot be generic: write one benchmark per concrete type",
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new(
            v.span(),
            "#[energy_bench] does not support variadic functions",
        ));
    }
    let mut types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                return Err(syn::Error::new(
                    r.span(),
                    "#[energy_bench] does not support methods: put it on a free function",
                ))
            }
            FnArg::Typed(p) => types.push(p),
        }
    }
    let has_args = opts.and_then(|o| o.args.as_ref()).map(|(_, span)| *span);
    let shape = match types.as_slice() {
        [] => Shape::Plain,
        [a] if is_bencher(&a.ty) => Shape::Bencher,
        [a] => Shape::Arg(a.ty.clone()),
        [a, b] if is_bencher(&a.ty) && !is_bencher(&b.ty) => Shape::BencherArg(b.ty.clone()),
        _ => {
            return Err(syn::Error::new(
                sig.inputs.span(),
                "unsupported signature for #[energy_bench]: use `fn()`, `fn(arg)` with `args = [...]`, `fn(&mut lem::Bencher)` or `fn(&mut lem::Bencher, arg)` with `args = [...]`",
            ))
        }
    };
    match (&shape, has_args) {
        (Shape::Plain | Shape::Bencher, Some(span)) => Err(syn::Error::new(
            span,
            "`args` needs a parameter to pass them to: add one, e.g. `fn decode(batch: usize)`",
        )),
        (Shape::Arg(t) | Shape::BencherArg(t), None) if opts.is_some() => Err(syn::Error::new(
            t.span(),
            "this parameter needs values: add `args = [...]` to #[energy_bench(...)]",
        )),
        _ => Ok(shape),
    }
}
