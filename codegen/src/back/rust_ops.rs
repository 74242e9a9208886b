//! Rust emitters for the op-level IR ([`crate::ir::ops`]): one arm per op, each
//! calling the `irnn_runtime::kernels` function that defines the op, for the recurrent
//! layers the plan writes op by op (`back::plan`: GRU, Elman RNN, any layer with
//! `--fusion none`). The target's choices come
//! from [`Gen`]: packed matrices and the runtime's matrix kernels on SIMD targets,
//! each table's whole-array form where the target has one.

use super::{int, lit, table_fn, Gen, GenError};
use crate::ir::ops::{Dtype, Op, OpLayer, Role, View};
use irnn_runtime::Requant;
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

/// `buf[start..start + len]` of a view.
fn slice(layer: &OpLayer, v: View) -> TokenStream {
    let b = format_ident!("{}", layer.buffers[v.buf].name);
    let (s, e) = (lit(v.start), lit(v.start + v.len));
    quote!(#b[#s..#e])
}

impl Gen<'_> {
    /// Requantizer `k` of a list: a literal for a single entry, else
    /// `Requant { multiplier: L{i}_{base}_MUL[k], .. }` over new statics.
    fn req_expr(
        &self,
        i: usize,
        base: &str,
        req: &[Requant],
        items: &mut Vec<TokenStream>,
    ) -> TokenStream {
        if let [r] = req {
            let (m, s) = (int(r.multiplier as i64), int(r.shift as i64));
            return quote!(Requant { multiplier: #m, shift: #s });
        }
        items.push(self.requant_statics(i, base, req, &format!("op {base}")));
        let (m, s) = (
            format_ident!("L{}_{}_MUL", i, base),
            format_ident!("L{}_{}_SHIFT", i, base),
        );
        quote!(Requant { multiplier: #m[k], shift: #s[k] })
    }

    /// The statics and the step function `l{i}_cell` of an op-level layer. With
    /// `chunk` (the plan's input projection for sequence mode, on a SIMD target), the
    /// ops after it are `l{i}_rec`, which takes the projection's accumulators, and
    /// `l{i}_cell` computes the projection and calls it.
    pub(super) fn cell(
        &mut self,
        i: usize,
        l: &OpLayer,
        chunk: Option<usize>,
    ) -> Result<TokenStream, GenError> {
        let out = &l.buffers[l.output.buf];
        if !matches!(out.role, Role::State { .. }) || out.name != "h" || l.output.start != 0 {
            return Err(GenError::Layer {
                layer: l.name.clone(),
                message: "a cell's output must be its whole state buffer \"h\"".into(),
            });
        }
        let mut items = Vec::new();
        let mut mats = Vec::new();
        for (k, m) in l.mats.iter().enumerate() {
            let w = format_ident!("L{}_M{}", i, k);
            let b = format_ident!("L{}_M{}_BIAS", i, k);
            let mat = format_ident!("L{}_M{}_MAT", i, k);
            if self.simd() {
                items.push(self.packed_statics(
                    i,
                    [&w, &b, &mat],
                    &m.name,
                    &m.w,
                    &m.bias,
                    m.rows,
                    m.cols,
                )?);
            } else {
                let d = self.layer_doc(
                    i,
                    &format!(
                        "{} weights, [{}][{}] int8 codes stored as bytes",
                        m.name, m.rows, m.cols
                    ),
                );
                items.push(self.bytes_static(&w, &m.w, m.cols, d));
                let d = self.layer_doc(i, &format!("{} biases (zero points folded in)", m.name));
                items.push(Self::i32_static(&b, &m.bias, d));
            }
            mats.push((w, b, mat));
        }
        // The projection run per chunk: (op index, matrix, input, accumulators). The
        // plan names one only where the target has sequence mode (packed kernels).
        let proj = chunk.and_then(|k| match &l.ops[k] {
            Op::MatVec { mat, x, acc } => Some((k, *mat, *x, *acc)),
            _ => None,
        });
        let mut params = Vec::new();
        let mut rec_params = Vec::new();
        let mut state_args = Vec::new();
        for b in &l.buffers {
            let (name, ty, len) = (
                format_ident!("{}", b.name),
                format_ident!("{}", b.dtype.rust_type()),
                lit(b.len),
            );
            match b.role {
                Role::State { .. } => {
                    params.push(quote!(#name: &mut [#ty; #len]));
                    rec_params.push(quote!(#name: &mut [#ty; #len]));
                    state_args.push(quote!(#name));
                }
                Role::Input => params.push(quote!(#name: &[i8; #len])),
                Role::Temp => {}
            }
        }
        let mut body = Vec::new();
        let mut wrapper = None;
        if let Some((_, mat, x, acc)) = proj {
            let (name, len) = (format_ident!("{}", l.buffers[acc.buf].name), lit(acc.len));
            rec_params.push(quote!(#name: &[i32; #len]));
            let pm = &mats[mat].2;
            let (xs, accs) = (slice(l, x), slice(l, acc));
            let (f, rec) = (format_ident!("l{}_cell", i), format_ident!("l{}_rec", i));
            let (kparam, inline) = (self.kernel_param(), self.layer_inline());
            let fdoc = self.layer_doc(
                i,
                &format!(
                    "{} step: the input projection, then `l{i}_rec`",
                    l.kind.as_str()
                ),
            );
            wrapper = Some(quote! {
                #fdoc
                #inline
                fn #f(#kparam #(#params),*) {
                    let mut #name = [0i32; #len];
                    kernel.matvec(&#pm, &#xs, &mut #accs);
                    #rec(kernel, #(#state_args,)* &#name);
                }
            });
        }
        for (k, b) in l.buffers.iter().enumerate() {
            if b.role != Role::Temp || proj.is_some_and(|p| p.3.buf == k) {
                continue;
            }
            let (name, len) = (format_ident!("{}", b.name), lit(b.len));
            let zero = match b.dtype {
                Dtype::I8 => Literal::i8_suffixed(0),
                Dtype::I16 => Literal::i16_suffixed(0),
                Dtype::I32 => Literal::i32_suffixed(0),
            };
            body.push(quote!(let mut #name = [#zero; #len];));
        }
        for (n, op) in l.ops.iter().enumerate() {
            if proj.is_some_and(|p| p.0 == n) {
                continue;
            }
            let s = |v: &View| slice(l, *v);
            let len = lit(op.writes().len);
            let d = s(&op.writes());
            let each = |e: TokenStream| {
                quote! {
                    for k in 0..#len {
                        #d[k] = #e;
                    }
                }
            };
            body.push(match op {
                Op::Lookup { .. } => {
                    return Err(GenError::Layer {
                        layer: l.name.clone(),
                        message: format!("no per-op emitter for {op:?}")
                            .chars()
                            .take(80)
                            .collect(),
                    })
                }
                Op::MatVec { mat, x, acc } => {
                    let (w, b, pm) = &mats[*mat];
                    let (xs, accs) = (s(x), s(acc));
                    if self.simd() {
                        quote!(kernel.matvec(&#pm, &#xs, &mut #accs);)
                    } else {
                        let cols = lit(l.mats[*mat].cols);
                        quote! {
                            let xv = &#xs;
                            for (r, row) in #w.chunks_exact(#cols).enumerate() {
                                let mut sum = #b[r];
                                for (w, v) in row.iter().zip(xv.iter()) {
                                    sum += *w as i8 as i32 * *v as i32;
                                }
                                #accs[r] = sum;
                            }
                        }
                    }
                }
                Op::GateSum { a, ra, b, .. } => {
                    let rae = self.req_expr(i, &format!("O{n}_A"), ra, &mut items);
                    let av = s(a);
                    match b {
                        Some((b, rb)) => {
                            let rbe = self.req_expr(i, &format!("O{n}_B"), rb, &mut items);
                            let bv = s(b);
                            each(quote!(gate_preactivation(#av[k], #rae, #bv[k], #rbe)))
                        }
                        None => each(quote!(requant_i16(#av[k], #rae))),
                    }
                }
                Op::Pwl { table, src, dst } => {
                    let f = table_fn(*table, &self.p.tables[*table]);
                    let (sv, dv) = (s(src), s(dst));
                    match self.array_call(*table, quote!(&mut #dv), &f) {
                        Some(call) => quote! {
                            #dv.copy_from_slice(&#sv);
                            #call
                        },
                        None => each(quote!(saturate_i16(#f(#sv[k])))),
                    }
                }
                Op::MulQ15 { a, b, .. } => {
                    let (av, bv) = (s(a), s(b));
                    each(quote!(mul_q15(#av[k], #bv[k])))
                }
                Op::AddSat { a, b, .. } => {
                    let (av, bv) = (s(a), s(b));
                    each(quote!(add_sat_i16(#av[k], #bv[k])))
                }
                Op::Blend { z, a, b, .. } => {
                    let (zv, av, bv) = (s(z), s(a), s(b));
                    each(quote!(blend_q15(#zv[k], #av[k], #bv[k])))
                }
                Op::Relu { src, .. } => {
                    let sv = s(src);
                    each(quote!(relu_i16(#sv[k])))
                }
                Op::Widen {
                    src,
                    zero_point,
                    req,
                    ..
                } => {
                    let sv = s(src);
                    let zp = int(*zero_point as i64);
                    let (m, sh) = (int(req.multiplier as i64), int(req.shift as i64));
                    each(quote!(widen_i8(#sv[k], #zp, Requant { multiplier: #m, shift: #sh })))
                }
                Op::Narrow {
                    a,
                    b,
                    req,
                    zero_point,
                    ..
                } => {
                    let re = self.req_expr(i, &format!("O{n}_A"), req, &mut items);
                    let av = s(a);
                    let x = match b {
                        Some(b) => {
                            let bv = s(b);
                            quote!(#av[k] as i32 * #bv[k] as i32)
                        }
                        None => quote!(#av[k] as i32),
                    };
                    let zp = int(*zero_point as i64);
                    each(quote!(requant_i8(#x, #re, #zp)))
                }
                Op::Requant32 { src, req, .. } => {
                    let re = self.req_expr(i, &format!("O{n}_A"), req, &mut items);
                    let sv = s(src);
                    each(quote!(#re.apply(#sv[k])))
                }
                Op::LstmCell {
                    i: gi,
                    f,
                    g,
                    c,
                    cell_frac_bits,
                } => {
                    let (iv, fv, gv, cv) = (s(gi), s(f), s(g), s(c));
                    let bits = lit(*cell_frac_bits as usize);
                    each(quote!(::irnn_runtime::kernels::lstm_cell_update(#iv[k], #fv[k], #gv[k], #cv[k], #bits)))
                }
            });
        }
        let fdoc = self.layer_doc(
            i,
            &format!(
                "{} step, op by op ({} ops, {} MACs){}",
                l.kind.as_str(),
                l.ops.len(),
                l.macs(),
                if proj.is_some() {
                    ", after its input projection"
                } else {
                    ""
                }
            ),
        );
        let (f, params) = match proj {
            Some(_) => (format_ident!("l{}_rec", i), rec_params),
            None => (format_ident!("l{}_cell", i), params),
        };
        let kparam = self.kernel_param();
        let inline = self.layer_inline();
        items.push(quote! {
            #fdoc
            #[allow(clippy::needless_range_loop, unused_imports, unused_mut)]
            #inline
            fn #f(#kparam #(#params),*) {
                use ::irnn_runtime::kernels::{
                    add_sat_i16, blend_q15, gate_preactivation, mul_q15, relu_i16, requant_i16,
                    requant_i8, widen_i8,
                };
                use ::irnn_runtime::{saturate_i16, Requant};
                #(#body)*
            }
        });
        items.extend(wrapper);
        Ok(quote!(#(#items)*))
    }
}
