"""Branchless transcendental functions emitted as plain LLVM IR.

Elementwise kernels must never call scalar libm (`expf`, `tanh`, ...): such a
call stops LLVM's loop vectoriser. Every function here is straight-line code
(arithmetic, compares, selects and intrinsics that lower to one x86
instruction), so a scalar loop that uses them vectorises, and the same
functions accept explicit vector values.

Each public function is `f(builder, x) -> value` for `x` a `float`/`double`
scalar or an `ir.VectorType` of them; the result has the type of `x`.

Algorithms: Cephes/FreeBSD-style range reduction and polynomials. The
polynomial coefficients are weighted least-squares fits on Chebyshev nodes
(mpmath, 50 digits) of the reduced function named next to each table, rounded
to the target precision; the fit errors quoted are after that rounding.
Measured accuracy and the covered domain are in tests/test_vmath.py; in short,
float32 results are within 3 ulp and float64 results within a few ulp, except
where a docstring says otherwise.
"""

from __future__ import annotations

from llvmlite import ir

from codegen.target import host

# ln 2 = LN2_HI + LN2_LO, LN2_HI short enough that k * LN2_HI is exact for
# every exponent k a float of that type can have (Cody-Waite).
_LN2 = {32: (0.693145751953125, 1.428606765330187e-06), 64: (0.6931471805598903, 5.497923018708371e-14)}
_LOG2E = 1.4426950408889634
# pi/2 in four parts of 33, 33, 33 and 53 bits: n * part is exact for |n| < 2^20.
_PIO2 = (1.5707963267341256, 6.077100506303966e-11, 2.0222662487111665e-21, 8.4784276603689e-32)
_TWO_OVER_PI = 0.6366197723675814
# exp clamps: beyond these the result is inf or 0 in that precision.
_EXP_RANGE = {32: (-104.0, 89.0), 64: (-746.0, 710.0)}

# exp(r) = 1 + r + r^2 Q(r), |r| <= ln2/2.  Fit error of Q, relative to exp(r) after rounding
# the coefficients: f32 5.3e-9 (0.09 ulp; degree 4: a fifth term would buy 0.07 ulp for an FMA),
# f64 2.3e-18.
_EXP_Q = {
    32: (0.4999999701976776, 0.16666515171527863, 0.04166725277900696, 0.008369405753910542,
         0.0013879409525543451),
    64: (0.5, 0.1666666666666667, 0.04166666666666668, 0.008333333333326025, 0.0013888888888878923,
         0.00019841269875206784, 2.4801587336843005e-05, 2.7557254911597584e-06, 2.755726285115862e-07,
         2.5105419888250275e-08, 2.0918295701543976e-09),
}
# expm1(r) = r + r^2/2 + r^3 Q(r), |r| <= ln2/2.  Fit error of Q, relative to expm1(r) after
# rounding the coefficients: f32 1.6e-8 (0.26 ulp; degree 3: tanh spends a tenth of its time less),
# f64 9.9e-18.
_EXPM1_Q = {
    32: (0.1666654497385025, 0.041666846722364426, 0.008366581052541733, 0.0013899900950491428),
    64: (0.16666666666666666, 0.04166666666666667, 0.008333333333333333, 0.001388888888888367,
         0.00019841269841263198, 2.480158732582335e-05, 2.755731924748574e-06, 2.755727329435924e-07,
         2.505207080917242e-08, 2.0914831786446253e-09, 1.6086733208649248e-10),
}
# log(1+f) = 2 atanh(s) = 2s + s z R(z), s = f/(2+f), z = s^2 <= 0.0295.  Fit error of R: f32 2.2e-8, f64 3.3e-16.
_LOG_R = {
    32: (0.6666666865348816, 0.4000012278556824, 0.2855069637298584, 0.2333366572856903),
    64: (0.666666666666667, 0.3999999999989777, 0.28571428626733336, 0.22222211014859694,
         0.18182897642132662, 0.1533144456452515, 0.14619811064881155),
}
# sin(r) = r + r^3 S(r^2), cos(r) = 1 - r^2/2 + r^4 C(r^2), |r| <= pi/4.
# Fit errors: S f32 2.5e-8, f64 3.3e-17; C f32 2.5e-9, f64 2.3e-18.
_SIN_S = {
    32: (-0.166666641831398, 0.008332744240760803, -0.00019586941925808787),
    64: (-0.16666666666666666, 0.008333333333330901, -0.0001984126983668725, 2.7557316065548233e-06,
         -2.5051124134984686e-08, 1.5917574169980188e-10),
}
_COS_C = {
    32: (0.0416666641831398, -0.0013888298999518156, 2.4546981876483187e-05),
    64: (0.041666666666666664, -0.0013888888888887367, 2.4801587298720983e-05, -2.755731724854151e-07,
         2.0876141437893427e-09, -1.1382284677660478e-11),
}
# |x| < 1: erf(x) = x + x E(x^2).  Fit error of E: f32 1.0e-8, f64 1.8e-17.
_ERF_E = {
    32: (0.12837916612625122, -0.3761262595653534, 0.11283597350120544, -0.026854325085878372,
         0.00518930284306407, -0.0008018764783628285, 7.882168574724346e-05),
    64: (0.1283791670955126, -0.3761263890318375, 0.11283791670954882, -0.02686617064507728,
         0.005223977624822691, -0.0008548326981097576, 0.00012055331121074092, -1.4925595488810921e-05,
         1.6461003969402226e-06, -1.6350348845113208e-07, 1.4660012978044285e-08, -1.1373746898475694e-09,
         5.958660499333604e-11),
}
# 1 <= |x| <= SAT: erf(x) = 1 - exp(-x^2) G(|x| - SHIFT), G ~ erfc(x) exp(x^2), fitted with
# weight exp(-x^2) so the absolute error of erf is what is minimised: f32 4.2e-9, f64 1.2e-17.
# Beyond SAT erf rounds to 1.
_ERF_SAT = {32: 4.0, 64: 6.0}
_ERF_SHIFT = {32: 2.5, 64: 3.5}
_ERF_G = {
    32: (0.21080754697322845, -0.07434079051017761, 0.02492334507405758, -0.008119704201817513,
         0.002291431650519371, -0.0007082644151523709, 0.000493522034958005, 0.00020199950085952878,
         0.00010278949775965884),
    64: (0.1552936556072001, -0.04132357783588406, 0.010661133312492639, -0.0026730738362081663,
         0.0006526868239598237, -0.00015547190937241698, 3.6173132342655166e-05, -8.244228957938459e-06,
         1.8459472916653106e-06, -3.803033543503616e-07, 1.0133676964233854e-07, -2.113334798488882e-08,
         -9.17811469392403e-09, -1.0249154565748229e-08, -2.0066695336804126e-09, 1.3469811080736506e-09,
         1.3913279878637539e-09, 5.748140361127855e-10, 1.3735317513572542e-10, 1.8427525694857684e-11,
         1.129161226964584e-12),
}
# pow's log: log(1+f) = 2s + (2/3) s^3 + s^5 P(s^2), z = s^2 <= 0.0295.  Fit error of P: 2.6e-17.
_POW_LOG_P = (0.4, 0.2857142857142938, 0.22222222221646973, 0.18181818337358785, 0.15384594757266862,
              0.13334815637582312, 0.11705948285137, 0.11726145633573887)
_TWO_THIRDS = (0.6666666666666666, 3.700743415417188e-17)
# tanh(x) rounds to +-1 beyond this.
_TANH_SAT = {32: 9.1, 64: 19.1}


class _Math:
    """Arithmetic on one float type, scalar or vector: Python numbers splat to its shape."""

    def __init__(self, builder: ir.IRBuilder, ty: ir.Type, op: str = "?"):
        elem = ty.element if isinstance(ty, ir.VectorType) else ty
        if not isinstance(elem, (ir.FloatType, ir.DoubleType)):
            raise TypeError(
                f"vmath.{op}: expected a float or double value (scalar or vector), got {ty}; "
                "convert integers with sitofp/uitofp first"
            )
        self.b = builder
        self.op = op
        self.ty = ty
        self.count = ty.count if isinstance(ty, ir.VectorType) else None
        self.bits = 64 if isinstance(elem, ir.DoubleType) else 32
        self.mant = 52 if self.bits == 64 else 23
        self.bias = 1023 if self.bits == 64 else 127
        self.ity = self.shape(ir.IntType(self.bits))
        self.i32 = self.shape(ir.IntType(32))

    def shape(self, elem: ir.Type) -> ir.Type:
        return ir.VectorType(elem, self.count) if self.count else elem

    def with_bits(self, bits: int) -> _Math:
        elem = ir.DoubleType() if bits == 64 else ir.FloatType()
        return _Math(self.b, self.shape(elem), self.op)

    def v(self, a):
        """`a` as a value of this type (numbers become splatted constants)."""
        if isinstance(a, (int, float)):
            return ir.Constant(self.ty, [float(a)] * self.count if self.count else float(a))
        return a

    def i(self, a: int) -> ir.Constant:
        """An integer constant of the same width and shape as the float type."""
        return ir.Constant(self.ity, [a] * self.count if self.count else a)

    def intrinsic(self, name: str, *args):
        ty = args[0].type
        elem = "f64" if self.bits == 64 else "f32"
        suffix = f"v{self.count}{elem}" if self.count else elem
        module = self.b.module
        fname = f"llvm.{name}.{suffix}"
        fn = module.globals.get(fname)
        if fn is None:
            fn = ir.Function(module, ir.FunctionType(ty, [ty] * len(args)), fname)
        return self.b.call(fn, list(args))

    # arithmetic
    def add(self, a, b):
        return self.b.fadd(self.v(a), self.v(b))

    def sub(self, a, b):
        return self.b.fsub(self.v(a), self.v(b))

    def mul(self, a, b):
        return self.b.fmul(self.v(a), self.v(b))

    def div(self, a, b):
        return self.b.fdiv(self.v(a), self.v(b))

    def neg(self, a):
        return self.b.fneg(a)

    def fma(self, a, b, c):
        """a*b + c: one rounding on FMA hosts, two elsewhere."""
        if host().has_fma:
            return self.intrinsic("fma", self.v(a), self.v(b), self.v(c))
        return self.add(self.mul(a, b), c)

    def abs(self, a):
        return self.intrinsic("fabs", a)

    def floor(self, a):
        return self.intrinsic("floor", a)

    def rint(self, a):
        return self.intrinsic("rint", a)

    def copysign(self, mag, sign):
        return self.intrinsic("copysign", self.v(mag), sign)

    def poly(self, x, coeffs):
        """Horner evaluation of sum(coeffs[k] * x^k)."""
        acc = self.v(coeffs[-1])
        for c in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, c)
        return acc

    def two_sum(self, a, b):
        """(s, e) with s = fl(a + b) and a + b = s + e exactly (Knuth)."""
        s = self.add(a, b)
        bb = self.sub(s, a)
        return s, self.add(self.sub(a, self.sub(s, bb)), self.sub(b, bb))

    def two_prod(self, a, b):
        """(p, e) with p = fl(a * b) and a * b = p + e exactly (FMA, or Dekker's split)."""
        a, b = self.v(a), self.v(b)
        p = self.mul(a, b)
        if host().has_fma:
            return p, self.intrinsic("fma", a, b, self.neg(p))
        split = float(2 ** ((self.mant + 2) // 2) + 1)

        def halves(u):
            t = self.mul(u, split)
            hi = self.sub(t, self.sub(t, u))
            return hi, self.sub(u, hi)

        ah, al = halves(a)
        bh, bl = halves(b)
        e = self.sub(self.mul(ah, bh), p)
        e = self.add(e, self.mul(ah, bl))
        e = self.add(e, self.mul(al, bh))
        return p, self.add(e, self.mul(al, bl))

    # comparisons (ordered: false when either side is NaN, unless named "u...")
    def cmp(self, op: str, a, b):
        return self.b.fcmp_ordered(op, self.v(a), self.v(b))

    def ucmp(self, op: str, a, b):
        return self.b.fcmp_unordered(op, self.v(a), self.v(b))

    def isnan(self, a):
        return self.b.fcmp_unordered("uno", a, a)

    def sel(self, cond, a, b):
        return self.b.select(cond, self.v(a), self.v(b))

    def clamp(self, x, lo: float, hi: float, keep_nan: bool = False):
        """x limited to [lo, hi]. NaN stays NaN with keep_nan, else becomes lo (a finite
        value keeps later float->int conversions defined; callers patch NaN afterwards)."""
        if keep_nan:
            x = self.sel(self.cmp("<", x, lo), lo, x)
            return self.sel(self.cmp(">", x, hi), hi, x)
        x = self.sel(self.cmp(">", x, lo), x, lo)
        return self.sel(self.cmp("<", x, hi), x, hi)

    def rint_scaled(self, x, scale: float):
        """(n, k): x * scale rounded to an integer, as a float n and as an integer k of the
        float's width, for |x * scale| < 2^(mant - 1). Adding 1.5 * 2^mant rounds (the sum's
        ulp is 1) and leaves the integer in the sum's low bits: no round instruction and no
        float->int conversion (instruction throughput bounds a tanh-heavy loop), and NaN stays NaN
        in n."""
        shifter = self.v(1.5 * 2.0**self.mant)
        t = self.fma(x, scale, shifter)
        k = self.b.sub(self.b.bitcast(t, self.ity), self.b.bitcast(shifter, self.ity))
        return self.sub(t, shifter), k

    def pow2(self, k):
        """2^k for an integer k (of the float's width) in the normal exponent range, built in
        the exponent bits."""
        return self.b.bitcast(self.b.shl(self.b.add(k, self.i(self.bias)), self.i(self.mant)), self.ty)

    def ldexp(self, p, k):
        """p * 2^k (k an integer of the float's width) in two exact steps, so k may reach the
        overflow and denormal range."""
        half = self.b.ashr(k, self.i(1))
        return self.mul(self.mul(p, self.pow2(half)), self.pow2(self.b.sub(k, half)))


def _check_same(x: ir.Value, y: ir.Value, name: str) -> None:
    if x.type != y.type:
        raise TypeError(f"vmath.{name}: operands must have one type, got {x.type} and {y.type}")


# ---------------------------------------------------------------- exp family

def _exp_reduce(m: _Math, x, lo=None):
    """(p, k) with exp(x + lo) ~= p * 2^k (k an integer), |x| within the clamp range, lo tiny."""
    ln2_hi, ln2_lo = _LN2[m.bits]
    n, k = m.rint_scaled(x, _LOG2E)
    r = m.fma(n, -ln2_hi, x)
    r = m.fma(n, -ln2_lo, r)
    if lo is not None:
        r = m.add(r, lo)
    q = m.poly(r, _EXP_Q[m.bits])
    return m.add(m.fma(m.mul(r, r), q, r), 1.0), k


def _exp(m: _Math, x, lo=None):
    """exp(x + lo) for a low part |lo| <= ulp(x); lo is dropped where x is clamped. NaN flows
    through the arithmetic (p is NaN whatever 2^k is)."""
    xc = m.clamp(x, *_EXP_RANGE[m.bits], keep_nan=True)
    if lo is not None:
        lo = m.sel(m.cmp("==", x, xc), lo, 0.0)
    p, k = _exp_reduce(m, xc, lo)
    return m.ldexp(p, k)


def exp(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """e^x; overflows to inf, underflows through denormals to 0, NaN stays NaN."""
    return _exp(_Math(builder, x.type, "exp"), x)


def _expm1_reduced(m: _Math, x, n):
    """expm1(r) for r = x - n ln2, n = rint(x / ln2): e^x - 1 = 2^n (expm1(r) + 1) - 1."""
    ln2_hi, ln2_lo = _LN2[m.bits]
    r = m.fma(n, -ln2_lo, m.fma(n, -ln2_hi, x))
    q = m.poly(r, _EXPM1_Q[m.bits])
    return m.fma(m.mul(r, r), m.fma(r, q, 0.5), r)


def expm1(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """e^x - 1, accurate near 0 (keeps -0); -1 for very negative x, inf on overflow."""
    m = _Math(builder, x.type, "expm1")
    xc = m.clamp(x, *_EXP_RANGE[m.bits])
    n, k = m.rint_scaled(xc, _LOG2E)
    p = _expm1_reduced(m, xc, n)
    # 2^k (p + 1) - 1 = 2^k2 (2^k1 p + 2^k1 - 2^-k2) with k = k1 + k2: every factor is a
    # normal power of two even for k = 128 (f32) / 1024 (f64), and only the fma rounds.
    k1 = builder.ashr(k, m.i(1))
    k2 = builder.sub(k, k1)
    s1 = m.pow2(k1)
    y = m.mul(m.fma(p, s1, m.sub(s1, m.pow2(builder.neg(k2)))), m.pow2(k2))
    # "x == 0 or NaN": returns x itself, keeping the sign of zero.
    return m.sel(m.ucmp("==", x, 0.0), x, y)


def tanh(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """tanh(x) = t / (t + 2), t = expm1(2|x|), with the sign of x; exactly +-1 for large |x|.

    Leaner than `expm1` (a tanh-heavy loop is bound by instruction throughput): 2|x| <= 2 SAT,
    so 2^k is one normal power of two and neither a clamp nor split scaling is needed, and NaN
    flows through the arithmetic."""
    m = _Math(builder, x.type, "tanh")
    sign = builder.and_(builder.bitcast(x, m.ity), m.i(-(1 << (m.bits - 1))))
    a = builder.bitcast(builder.xor(builder.bitcast(x, m.ity), sign), m.ty)
    a = m.sel(m.cmp(">", a, _TANH_SAT[m.bits]), _TANH_SAT[m.bits], a)  # NaN passes through
    y = m.add(a, a)
    n, k = m.rint_scaled(y, _LOG2E)
    s = m.pow2(k)
    t = m.fma(_expm1_reduced(m, y, n), s, m.sub(s, 1.0))
    result = builder.bitcast(m.div(t, m.add(t, 2.0)), m.ity)
    return builder.bitcast(builder.or_(result, sign), m.ty)


def logistic(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """1 / (1 + e^-x), computed as e^-|x| / (1 + e^-|x|) for x < 0 so nothing overflows."""
    m = _Math(builder, x.type, "logistic")
    e = exp(builder, m.neg(m.abs(x)))
    return m.div(m.sel(m.cmp(">=", x, 0.0), 1.0, e), m.add(e, 1.0))


# ---------------------------------------------------------------- log family

def _log_reduce(m: _Math, x):
    """(k, f) with x = 2^k (1 + f), 1 + f in [sqrt(1/2), sqrt(2)); x positive and finite."""
    tiny = m.cmp("<", x, 2.0 ** (1 - m.bias))
    scale = m.mant + 1
    x = m.sel(tiny, m.mul(x, 2.0**scale), x)
    # Adding (bits(1) - bits(sqrt(1/2))) carries into the exponent exactly when the
    # mantissa is >= sqrt(2)'s, which centres the mantissa on 1 without a compare.
    sqrt_half = 0x3FE6A09E667F3BCD if m.bits == 64 else 0x3F3504F3
    one = m.bias << m.mant
    ix = m.b.add(m.b.bitcast(x, m.ity), m.i(one - sqrt_half))
    k = m.b.lshr(ix, m.i(m.mant))
    if m.bits == 64:
        k = m.b.trunc(k, m.i32)  # i64 -> double has no AVX2 instruction, i32 -> double does
    k = m.sub(m.b.sitofp(k, m.ty), float(m.bias))
    k = m.sub(k, m.sel(tiny, float(scale), 0.0))
    mbits = m.b.add(m.b.and_(ix, m.i((1 << m.mant) - 1)), m.i(sqrt_half))
    return k, m.sub(m.b.bitcast(mbits, m.ty), 1.0)


def _log_tail(m: _Math, f):
    """(hfsq, s*(hfsq + R)) of the FreeBSD split log(1+f) = f - hfsq + s (hfsq + R), s = f/(2+f)."""
    s = m.div(f, m.add(f, 2.0))
    z = m.mul(s, s)
    r = m.mul(z, m.poly(z, _LOG_R[m.bits]))
    hfsq = m.mul(m.mul(f, f), 0.5)
    return hfsq, m.mul(s, m.add(hfsq, r))


def _log_finish(m: _Math, k, f, corr=None):
    """k ln2 + log(1 + f) + corr, with the rounding errors kept off the big terms."""
    ln2_hi, ln2_lo = _LN2[m.bits]
    hfsq, tail = _log_tail(m, f)
    low = m.mul(k, ln2_lo)
    if corr is not None:
        low = m.add(low, corr)
    return m.sub(m.mul(k, ln2_hi), m.sub(m.sub(hfsq, m.add(tail, low)), f))


def _log_specials(m: _Math, x, y, pole):
    """inf at +inf, -inf at the pole, NaN below it (and for NaN)."""
    y = m.sel(m.cmp("==", x, float("inf")), x, y)
    y = m.sel(m.cmp("==", x, pole), float("-inf"), y)
    return m.sel(m.ucmp("<", x, pole), float("nan"), y)


def log(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Natural log; denormals handled, log(+-0) = -inf, log(x < 0) = NaN."""
    m = _Math(builder, x.type, "log")
    k, f = _log_reduce(m, x)
    return _log_specials(m, x, _log_finish(m, k, f), 0.0)


def log1p(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """log(1 + x): reduces u = fl(1 + x) like log and adds back the rounding error of u."""
    m = _Math(builder, x.type, "log1p")
    u, err = m.two_sum(x, 1.0)
    k, f = _log_reduce(m, u)
    y = _log_finish(m, k, f, m.div(err, u))
    y = _log_specials(m, x, y, -1.0)
    return m.sel(m.cmp("==", x, 0.0), x, y)  # keeps -0


# ---------------------------------------------------------------- erf

def erf(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Error function: x (1 + E(x^2)) below 1, 1 - exp(-x^2) G(|x|) above, odd, +-1 at +-inf."""
    m = _Math(builder, x.type, "erf")
    a = m.abs(x)
    small = m.fma(a, m.poly(m.mul(a, a), _ERF_E[m.bits]), a)
    sat = _ERF_SAT[m.bits]
    ac = m.sel(m.cmp(">", a, sat), sat, a)  # NaN passes through
    # x^2 = hi + lo exactly, so exp(-x^2) does not inherit the rounding of x^2.
    hi, lo = m.two_prod(ac, ac)
    e = _exp(m, m.neg(hi), m.neg(lo))
    g = m.poly(m.sub(ac, _ERF_SHIFT[m.bits]), _ERF_G[m.bits])
    large = m.sub(1.0, m.mul(e, g))
    return m.copysign(m.sel(m.cmp("<", a, 1.0), small, large), x)


# ---------------------------------------------------------------- sin, cos

def _sincos(builder: ir.IRBuilder, x: ir.Value, quadrant_shift: float, op: str) -> ir.Value:
    """sin(x + quadrant_shift * pi/2): reduction to |r| <= pi/4 in double precision.

    The reduction is exact for |x| < 2^20 * pi/2 (1.6e6) and, with FMA, stays
    accurate well beyond; there is no Payne-Hanek reduction, so for huge |x| the
    result is a value in [-1, 1] but not sin(x).
    """
    m = _Math(builder, x.type, op)
    d = m.with_bits(64)
    xd = builder.fpext(x, d.ty) if m.bits == 32 else x
    n = d.rint(d.mul(xd, _TWO_OVER_PI))
    r = xd
    for part in _PIO2:
        r = d.fma(n, -part, r)
    # Only arguments past the exact range can leave [-pi/4, pi/4]; this keeps |result| <= 1 there.
    r = d.clamp(r, -0.786, 0.786, keep_nan=True)
    # Quadrant (n + shift) mod 4 as a float: exact, and no int conversion of a huge n.
    q = d.add(n, quadrant_shift)
    q = d.sub(q, d.mul(d.floor(d.mul(q, 0.25)), 4.0))
    if m.bits == 32:
        r = builder.fptrunc(r, m.ty)
    z = m.mul(r, r)
    sin_r = m.fma(m.mul(r, z), m.poly(z, _SIN_S[m.bits]), r)
    cos_r = m.fma(z, m.fma(z, m.poly(z, _COS_C[m.bits]), -0.5), 1.0)
    odd = d.b.or_(d.cmp("==", q, 1.0), d.cmp("==", q, 3.0))
    y = m.sel(odd, cos_r, sin_r)
    return m.sel(d.cmp(">=", q, 2.0), m.neg(y), y)


def sin(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Sine (sin(-0) = -0, NaN for inf and NaN); see _sincos for the argument range."""
    m = _Math(builder, x.type, "sin")
    return m.sel(m.cmp("==", x, 0.0), x, _sincos(builder, x, 0.0, "sin"))


def cos(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Cosine (NaN for inf and NaN); see _sincos for the argument range."""
    return _sincos(builder, x, 1.0, "cos")


# ---------------------------------------------------------------- pow

def _pow_magnitude(d: _Math, ax, y):
    """ax^y for finite positive ax and finite y, in double via a double-double log.

    exp(y log x) turns an error e in y log x into a relative error e of the result,
    and |y log x| reaches 745, so log x carries about 64 bits: log(1+f) = 2 atanh(s)
    = 2s + (2/3) s^3 + s^5 P(s^2) with s and the first two terms as double-doubles.
    """
    ln2_hi, ln2_lo = _LN2[64]
    k, f = _log_reduce(d, ax)
    u = d.add(f, 2.0)
    u_lo = d.add(d.sub(2.0, u), f)  # 2 + f = u + u_lo exactly (|2| >= |f|)
    s = d.div(f, u)
    su, su_err = d.two_prod(s, u)
    s_lo = d.div(d.sub(d.sub(d.sub(f, su), su_err), d.mul(s, u_lo)), u)  # f - su is exact
    z, z_lo = d.two_prod(s, s)
    c, c_lo = d.two_prod(z, s)  # s^3
    # s_true^3 = (z + z_lo) s + 3 z s_lo to first order in the low parts.
    c_lo = d.add(c_lo, d.fma(z_lo, s, d.mul(d.mul(z, 3.0), s_lo)))
    t3, t3_lo = d.two_prod(c, _TWO_THIRDS[0])  # (2/3) s^3
    t3_lo = d.add(t3_lo, d.fma(c, _TWO_THIRDS[1], d.mul(c_lo, _TWO_THIRDS[0])))
    s5 = d.mul(d.mul(c, z), d.poly(z, _POW_LOG_P))
    a, a_err = d.two_sum(d.mul(k, ln2_hi), d.add(s, s))
    b, b_err = d.two_sum(a, t3)
    low = d.add(d.add(a_err, b_err), d.mul(k, ln2_lo))
    low = d.add(low, d.add(d.add(s_lo, s_lo), d.add(t3_lo, s5)))
    hi = d.add(b, low)
    lo = d.sub(low, d.sub(hi, b))
    t, t_err = d.two_prod(y, hi)
    return _exp(d, t, d.fma(y, lo, t_err))


def pow(builder: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """x ** y with C99/NumPy semantics, computed in double (float32 is widened).

    Covered: negative x with integral y (sign from y's parity), NaN for finite
    negative x with non-integral y, x**0 = 1 and 1**y = 1 even for NaN,
    signed zeros and infinities for x = +-0 and x = +-inf, (-1)**+-inf = 1,
    |x|**+-inf = 0 or inf, overflow to inf and underflow to 0. float64 keeps
    y*log(x) in double-double so results near the overflow bound stay within a few ulp.
    """
    _check_same(x, y, "pow")
    m = _Math(builder, x.type, "pow")
    d = m.with_bits(64)
    if m.bits == 32:
        x, y = builder.fpext(x, d.ty), builder.fpext(y, d.ty)
    inf = float("inf")
    ax = d.abs(x)
    if m.bits == 32:
        # |y log x| < 104 in float32's range: plain double log/exp leave ~1e-14 relative error.
        k, f = _log_reduce(d, ax)
        r = _exp(d, d.mul(y, _log_finish(d, k, f)))
    else:
        r = _pow_magnitude(d, ax, y)
    y_int = d.cmp("==", d.floor(y), y)
    half = d.mul(y, 0.5)
    y_odd = d.b.and_(y_int, d.cmp("!=", d.floor(half), half))
    x_neg = builder.icmp_signed("<", builder.bitcast(x, d.ity), d.i(0))
    y_inf = d.cmp("==", d.abs(y), inf)
    # 0, inf bases and infinite exponents: only "grows or shrinks" is left.
    edge = builder.or_(builder.or_(d.cmp("==", ax, 0.0), d.cmp("==", ax, inf)), y_inf)
    grows = builder.xor(d.cmp(">", ax, 1.0), d.cmp("<", y, 0.0))
    r = d.sel(edge, d.sel(grows, inf, 0.0), r)
    r = d.sel(builder.and_(x_neg, y_odd), d.neg(r), r)
    finite_neg = builder.and_(d.cmp("<", x, 0.0), d.cmp(">", x, -inf))
    r = d.sel(builder.and_(finite_neg, builder.not_(y_int)), float("nan"), r)
    r = d.sel(builder.or_(d.isnan(x), d.isnan(y)), float("nan"), r)
    r = d.sel(builder.and_(d.cmp("==", ax, 1.0), y_inf), 1.0, r)
    r = d.sel(builder.or_(d.cmp("==", y, 0.0), d.cmp("==", x, 1.0)), 1.0, r)
    return builder.fptrunc(r, m.ty) if m.bits == 32 else r


# ---------------------------------------------------------------- roots

def sqrt(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Correctly rounded square root (llvm.sqrt: one sqrtps/sqrtpd)."""
    return _Math(builder, x.type, "sqrt").intrinsic("sqrt", x)


def rsqrt(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """1 / sqrt(x) with a true division, not the 12-bit rsqrtps estimate."""
    m = _Math(builder, x.type, "rsqrt")
    return m.div(1.0, m.intrinsic("sqrt", x))
