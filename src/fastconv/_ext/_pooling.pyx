"""2-D max and average pooling kernels, forward and backward, NCHW and NHWC.

Legend:
    N       batch
    C       channels
    H, W    input height, width
    oH, oW  output height, width (taken from the output array; ceil_mode is already reflected there)
    kh, kw  window size;  sh, sw  stride;  dh, dw  dilation (max pooling only)
    pt, pb, pl, pr  padding top, bottom, left, right

Window of output (oh, ow): input rows ih = oh*sh - pt + i*dh (i < kh), columns iw = ow*sw - pl + j*dw (j < kw).
Positions outside [0, H) x [0, W) are skipped (max) or count as padding (avg).

Semantics are those of PyTorch's CPU kernels (aten/src/ATen/native/cpu/{Max,Avg}PoolKernel.cpp):
- max: start at -inf with index = first in-bounds position of the window; take a value when it is greater than
  the running max or NaN. Ties keep the FIRST maximum; with NaNs the index of the LAST NaN (scan order) wins.
  Indices are flat positions ih*W + iw within the H x W plane (both layouts).
- avg: hend = min(hstart + kh, H + pb), pool_size = (hend - hstart)*(wend - wstart) before clipping to the input;
  divisor = divisor_override or pool_size (count_include_pad) or the clipped window area. A window with no input
  element gives 0. Sums are accumulated in the data type in row-major window order, as PyTorch does.

All kernels overwrite their outputs completely. No fast-math: NaN comparisons must work.
Parallel work is split so that each output element is written by one thread, in a fixed order: results are
bitwise reproducible and do not depend on num_threads.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport INT32_MAX, int32_t, int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from fastconv._ext._fpenv cimport flush_denormals_enter, flush_denormals_exit
from fastconv._ext._simd cimport FASTCONV_VBYTES
from libc.math cimport INFINITY


cdef inline Py_ssize_t _imin(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


cdef inline Py_ssize_t _imax(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a > b else b


cdef inline Py_ssize_t _first_in(Py_ssize_t start, Py_ssize_t step) noexcept nogil:
    """Smallest start + k*step >= 0 (k >= 0)."""
    if start < 0:
        start += ((step - 1 - start) // step) * step
    return start


cdef inline void _out_range(Py_ssize_t off, Py_ssize_t stride, Py_ssize_t W, Py_ssize_t oW,
                            Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """[lo, hi) := {ow in [0, oW) : 0 <= ow*stride + off < W}."""
    cdef Py_ssize_t a = 0, b
    if off < 0:
        a = (stride - 1 - off) // stride
    if W - 1 - off < 0:
        b = 0
    else:
        b = _imin((W - 1 - off) // stride + 1, oW)
    lo[0] = a
    hi[0] = b if b > a else a


cdef inline void _s2_interior(Py_ssize_t W, Py_ssize_t oW, Py_ssize_t k, Py_ssize_t pl,
                              Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """[lo, hi) := the ow whose stride-2 window of width k (columns 2*ow - pl + j, j < k) lies inside [0, W)."""
    cdef Py_ssize_t unused
    _out_range(-pl, 2, W, oW, lo, &unused)
    _out_range(k - 1 - pl, 2, W, oW, &unused, hi)
    if hi[0] < lo[0]:
        hi[0] = lo[0]


cdef inline Py_ssize_t _channel_block(Py_ssize_t N, Py_ssize_t C, int nt) noexcept nogil:
    """Channel block for NHWC backward: enough (n, block) tasks for the threads, blocks a multiple of 16."""
    cdef Py_ssize_t nblk, cb
    if C <= 16 or N <= 0 or N >= 4 * nt:
        return _imax(C, 1)
    nblk = (4 * nt + N - 1) // N
    cb = (C + nblk - 1) // nblk
    cb = ((cb + 15) // 16) * 16
    return _imin(cb, C)


# ----------------------------------------------------------------------------------------------------------------
# max pooling
# ----------------------------------------------------------------------------------------------------------------

ctypedef fused idx_t:
    int32_t
    int64_t


cdef inline void _max_strided(const floating* xrow, floating* m, idx_t* q, Py_ssize_t lo, Py_ssize_t hi,
                              Py_ssize_t sw, Py_ssize_t off, idx_t base) noexcept nogil:
    """For ow in [lo, hi): v = xrow[ow*sw + off]; if v > m[ow] or v is NaN: m[ow], q[ow] = v, base + ow*sw."""
    cdef Py_ssize_t ow
    cdef floating v, mm
    cdef bint take
    for ow in range(lo, hi):
        v = xrow[ow * sw + off]
        mm = m[ow]
        take = (v > mm) | (v != v)
        m[ow] = v if take else mm
        q[ow] = (base + <idx_t>ow * <idx_t>sw) if take else q[ow]


cdef inline void _take(floating v, idx_t k, floating* m, idx_t* q) noexcept nogil:
    """The max-pool select: if v > m or v is NaN: m, q = v, k."""
    cdef bint take = (v > m[0]) | (v != v)
    m[0] = v if take else m[0]
    q[0] = k if take else q[0]


cdef inline void _max_row_s2(const floating* r0, floating* orow, int64_t* irow, idx_t W, int64_t base,
                             Py_ssize_t off, Py_ssize_t lo, Py_ssize_t hi,
                             const floating* e, Py_ssize_t L) noexcept nogil:
    """Stride 2, dilation 1, 2x2 windows (3x3 if e != NULL) wholly inside the plane, for ow in [lo, hi).

    The window of ow is r0[2*ow + off + i*W + j]; orow[ow] := its max, irow[ow] := base + 2*ow + off + the
    offset i*W + j of the max. Same scan order and select as the generic kernel, with all of the window's
    pixels in one branch-free loop body (vectorised over ow), started from the first pixel.

    3x3 reads the rows deinterleaved: e[2*i*L + k] = r_i[2*k + off], e[(2*i + 1)*L + k] = r_i[2*k + off + 1].
    Reading columns 2*ow, 2*ow + 1, 2*ow + 2 of the rows themselves makes GCC finish every run with a few
    scalar iterations (its "peeling for gaps"), whose branchy selects cost more than the whole vector loop.
    """
    cdef const floating* r1 = r0 + W
    cdef Py_ssize_t ow, c
    cdef floating m
    cdef idx_t q
    if e != NULL:     # two loops, not a test inside one: GCC vectorises only branch-free loop bodies
        for ow in range(lo, hi):
            m = e[ow]
            q = 0
            _take(e[L + ow], <idx_t>1, &m, &q)
            _take(e[ow + 1], <idx_t>2, &m, &q)
            _take(e[2 * L + ow], W, &m, &q)
            _take(e[3 * L + ow], W + 1, &m, &q)
            _take(e[2 * L + ow + 1], W + 2, &m, &q)
            _take(e[4 * L + ow], 2 * W, &m, &q)
            _take(e[5 * L + ow], 2 * W + 1, &m, &q)
            _take(e[4 * L + ow + 1], 2 * W + 2, &m, &q)
            orow[ow] = m
            irow[ow] = base + 2 * ow + off + q
    else:
        for ow in range(lo, hi):
            c = 2 * ow + off
            m = r0[c]
            q = 0
            _take(r0[c + 1], <idx_t>1, &m, &q)
            _take(r1[c], W, &m, &q)
            _take(r1[c + 1], W + 1, &m, &q)
            orow[ow] = m
            irow[ow] = base + c + q


cdef inline void _max_row_s2_blocks(const floating* r0, floating* orow, int64_t* irow, idx_t W, int64_t base,
                                    Py_ssize_t off, Py_ssize_t lo, Py_ssize_t hi,
                                    floating* e, Py_ssize_t L) noexcept nogil:
    """_max_row_s2 on [lo, hi) in runs of a multiple of 16 (or 8) outputs, the last overlapping the one before.

    GCC vectorises _max_row_s2 8 or 16 lanes wide and finishes with a scalar loop, whose selects compile to
    branches that random data mispredicts half the time; rows are short (12 outputs for MNIST, 56 for the
    ResNet stem). Recomputing a few outputs avoids that remainder: they get the same values again.
    e: NULL for 2x2, else scratch of 6*L >= 6*(hi + 1) elements for 3x3 (see _max_row_s2).
    """
    cdef Py_ssize_t g = 16 if hi - lo >= 16 else 8
    cdef Py_ssize_t mid = lo + (hi - lo) // g * g
    cdef Py_ssize_t i, k
    cdef const floating* r
    if e != NULL:
        for i in range(3):
            r = r0 + i * W + off
            for k in range(lo, hi + 1):
                e[2 * i * L + k] = r[2 * k]
            for k in range(lo, hi):
                e[(2 * i + 1) * L + k] = r[2 * k + 1]
    if hi - lo < 8 or mid == hi:
        _max_row_s2(r0, orow, irow, W, base, off, lo, hi, e, L)
    else:
        _max_row_s2(r0, orow, irow, W, base, off, lo, mid, e, L)
        _max_row_s2(r0, orow, irow, W, base, off, hi - g, hi, e, L)


cdef inline void _max_one(const floating* x, floating* o, int64_t* ind, Py_ssize_t W, Py_ssize_t h0,
                          Py_ssize_t h1, Py_ssize_t dh, Py_ssize_t w0, Py_ssize_t w1, Py_ssize_t dw) noexcept nogil:
    """One window of the plane x: rows h0, h0 + dh, ... < h1, columns w0, w0 + dw, ... < w1 (h0, w0 the first
    in-bounds ones); *o, *ind := its max (-inf if empty) and flat index, as the generic kernel."""
    cdef floating m = -INFINITY
    cdef int64_t q = h0 * W + w0
    cdef Py_ssize_t ih = h0, iw
    while ih < h1:
        iw = w0
        while iw < w1:
            _take(x[ih * W + iw], <int64_t>(ih * W + iw), &m, &q)
            iw += dw
        ih += dh
    o[0] = m
    ind[0] = q


cdef void _max_fwd_plane(const floating* x, floating* out, int64_t* ind, idx_t* q, floating* buf,
                         Py_ssize_t H, Py_ssize_t W, Py_ssize_t oH, Py_ssize_t oW,
                         Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                         Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw) noexcept nogil:
    """out[oh, ow] := max_{i,j} x[oh*sh - pt + i*dh, ow*sw - pl + j*dw]; ind := its flat position.

    q is a row of oW running indices, of the integer type as wide as floating (so the select vectorises);
    it may alias the indices row when idx_t is int64_t. buf: scratch of 6*(oW + 1) elements.
    """
    cdef Py_ssize_t oh, ow, h0, h1, ih, j, off, lo, hi
    cdef floating* orow
    cdef int64_t* irow
    cdef idx_t* qrow
    cdef const floating* xrow
    cdef idx_t base
    cdef Py_ssize_t flo = 0, fhi = 0
    # 2x2 and 3x3 stride 2: rows whose windows lie inside the input vertically take _max_row_s2 on the columns
    # [flo, fhi) where they lie inside horizontally too.
    if dh == 1 and dw == 1 and sw == 2 and kh == kw and (kh == 2 or kh == 3):
        _s2_interior(W, oW, kw, pl, &flo, &fhi)
    for oh in range(oH):
        h0 = oh * sh - pt
        orow = out + oh * oW
        irow = ind + oh * oW
        if flo < fhi and h0 >= 0 and h0 + kh <= H:
            _max_row_s2_blocks(x + h0 * W, orow, irow, <idx_t>W, h0 * W, -pl, flo, fhi,
                               buf if kh == 3 else NULL, oW + 1)
            for ow in range(flo):
                _max_one(x, orow + ow, irow + ow, W, h0, h0 + kh, 1, _first_in(2 * ow - pl, 1),
                         _imin(2 * ow - pl + kw, W), 1)
            for ow in range(fhi, oW):
                _max_one(x, orow + ow, irow + ow, W, h0, h0 + kh, 1, 2 * ow - pl, _imin(2 * ow - pl + kw, W), 1)
            continue
        h1 = _imin(h0 + (kh - 1) * dh + 1, H)
        h0 = _first_in(h0, dh)
        qrow = q if q != NULL else <idx_t*>irow
        for ow in range(oW):
            orow[ow] = -INFINITY
            qrow[ow] = <idx_t>(h0 * W + _first_in(ow * sw - pl, dw))
        ih = h0
        while ih < h1:
            xrow = x + ih * W
            for j in range(kw):
                off = j * dw - pl
                _out_range(off, sw, W, oW, &lo, &hi)
                base = <idx_t>(ih * W + off)
                if sw == 1:
                    _max_strided(xrow, orow, qrow, lo, hi, 1, off, base)
                elif sw == 2:
                    _max_strided(xrow, orow, qrow, lo, hi, 2, off, base)
                else:
                    _max_strided(xrow, orow, qrow, lo, hi, sw, off, base)
            ih += dh
        if q != NULL:
            for ow in range(oW):
                irow[ow] = q[ow]


cdef extern from *:
    """
    /* The max-pool select on the lanes of V, branch-free: m := v where v > m or v is NaN. */
    #define FASTCONV_SELECT_MAX(V, I, m, v) ({                                               \
        V m_ = (m), v_ = (v);                                                              \
        I t_ = (I)(v_ > m_) | (I)(v_ != v_);                                               \
        (V)(((I)v_ & t_) | ((I)m_ & ~t_)); })
    #define FASTCONV_SELECT_MAX_1(m, v) (((v) > (m) || (v) != (v)) ? (v) : (m))

    /* Window reductions at column stride 2, kh x kw windows (kw = 2 or 3):
       o[t] := reduce over r[i*ld + 2t + j], i < kh, j < kw, in row-major order, for t < n.
       MAX: the max-pool select from the first element (values only).
       AVG: the sum from 0 (0 + -0.0 is +0.0, as in PyTorch) in that order, divided by dv.
       The even and odd columns are taken apart by shuffles; the last vector overlaps the one before
       (it recomputes the same outputs) rather than leaving a scalar remainder, whose max selects
       would be mispredicted branches. Runs shorter than a V go to SHORT: the same kernel on half
       vectors, then the scalar loop. */
    #define FASTCONV_MAX_TREE 1
    #define FASTCONV_MAX_START(V, e) (e)
    #define FASTCONV_MAX_ADD(V, I, m, v) FASTCONV_SELECT_MAX(V, I, m, v)
    #define FASTCONV_MAX_END(m, dv) (m)
    #define FASTCONV_MAX_ADD_1(m, v) FASTCONV_SELECT_MAX_1(m, v)
    #define FASTCONV_AVG_TREE 0  /* the sum in PyTorch's order, one chain */
    #define FASTCONV_AVG_START(V, e) ((V){0} + (e))
    #define FASTCONV_AVG_ADD(V, I, m, v) ((m) + (v))
    #define FASTCONV_AVG_END(m, dv) ((m) / (dv))
    #define FASTCONV_AVG_ADD_1(m, v) ((m) + (v))

    #define FASTCONV_WINDOW_S2_SCALAR(NAME, T, OP)                                            \
    static void NAME(const T *restrict r, Py_ssize_t ld, int kh, int kw, T *restrict o,     \
                     Py_ssize_t n, T dv) {                                                 \
        for (Py_ssize_t t = 0; t < n; t++) {                                               \
            T m = OP##_START(T, r[2 * t]);                                                 \
            for (int i = 0; i < kh; i++)                                                   \
                for (int j = i == 0; j < kw; j++)                                          \
                    m = OP##_ADD_1(m, r[i * ld + 2 * t + j]);                              \
            o[t] = OP##_END(m, dv);                                                        \
        }                                                                                  \
    }
    #define FASTCONV_WINDOW_S2(NAME, T, V, I, OP, SHORT)                                      \
    static inline __attribute__((always_inline)) void                                      \
    NAME##_body(const T *restrict r, Py_ssize_t ld, int kh, int kw, T *restrict o,          \
                Py_ssize_t n, T dv) {                                                      \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        I even, odd, next;                                                                 \
        for (int i = 0; i < L; i++) {                                                      \
            even[i] = 2 * i;                                                               \
            odd[i] = 2 * i + 1;                                                            \
            next[i] = i + 1;                                                               \
        }                                                                                  \
        next[L - 1] = 2 * L - 1;    /* the last lane of the vector that ends at p[2L] */   \
        for (Py_ssize_t t = 0;; t += L) {                                                  \
            if (t > n - L)                                                                 \
                t = n - L;                                                                 \
            const T *p = r + 2 * t;                                                        \
            V m;                                                                           \
            for (int i = 0; i < kh; i++, p += ld) {                                        \
                V a = FASTCONV_LD(V, p), b = FASTCONV_LD(V, p + L);                        \
                V e = __builtin_shuffle(a, b, even);                                       \
                /* a row's reduction, then the rows': for max, whose select is associative \
                   over runs of the scan, the rows' chains are independent */              \
                V row = OP##_TREE || i == 0 ? OP##_START(V, e) : OP##_ADD(V, I, m, e);     \
                row = OP##_ADD(V, I, row, __builtin_shuffle(a, b, odd));                   \
                if (kw == 3)  /* columns 2t + 2: e moved on a lane (by a shuffle: 0 + -0.0 is +0.0) */ \
                    row = OP##_ADD(V, I, row, __builtin_shuffle(e, FASTCONV_LD(V, p + L + 1), next)); \
                m = OP##_TREE && i > 0 ? OP##_ADD(V, I, m, row) : row;                     \
            }                                                                              \
            FASTCONV_ST(V, o + t, OP##_END(m, dv));                                        \
            if (t + L >= n)                                                                \
                break;                                                                     \
        }                                                                                  \
    }                                                                                      \
    static void NAME(const T *restrict r, Py_ssize_t ld, int kh, int kw, T *restrict o,     \
                     Py_ssize_t n, T dv) {                                                 \
        if (n < (Py_ssize_t)(sizeof(V) / sizeof(T)))                                       \
            SHORT(r, ld, kh, kw, o, n, dv);                                                \
        else if (kh == 3 && kw == 3)    /* constants: the loop over rows unrolled */        \
            NAME##_body(r, ld, 3, 3, o, n, dv);                                            \
        else if (kh == 2 && kw == 2)                                                       \
            NAME##_body(r, ld, 2, 2, o, n, dv);                                            \
        else                                                                               \
            NAME##_body(r, ld, kh, kw, o, n, dv);                                          \
    }
    /* the three widths of one reduction for one type: fastconv_<op>_s2_<t> */
    #define FASTCONV_WINDOW_S2_ALL(NAME, T, VT, IT, HT, IHT, OP)                              \
        FASTCONV_WINDOW_S2_SCALAR(NAME##_scalar, T, OP)                                    \
        FASTCONV_WINDOW_S2(NAME##_half, T, HT, IHT, OP, NAME##_scalar)                     \
        FASTCONV_WINDOW_S2(NAME, T, VT, IT, OP, NAME##_half)
    FASTCONV_WINDOW_S2_ALL(fastconv_max_s2_f, float, fastconv_vf, fastconv_if, fastconv_hf, fastconv_ihf, FASTCONV_MAX)
    FASTCONV_WINDOW_S2_ALL(fastconv_max_s2_d, double, fastconv_vd, fastconv_id, fastconv_hd, fastconv_ihd, FASTCONV_MAX)
    FASTCONV_WINDOW_S2_ALL(fastconv_avg_s2_f, float, fastconv_vf, fastconv_if, fastconv_hf, fastconv_ihf, FASTCONV_AVG)
    FASTCONV_WINDOW_S2_ALL(fastconv_avg_s2_d, double, fastconv_vd, fastconv_id, fastconv_hd, fastconv_ihd, FASTCONV_AVG)

    /* The average pool's gradient for 2x2 stride-2 windows that do not overlap:
       g0[2t + j] := g1[2t + j] := 0 + go[t] / dv for j < 2, t < n; each lane's value is written
       to two neighbours by a shuffle. The last vector overlaps the one before (same values). */
    #define FASTCONV_SPREAD_2X2_SCALAR(NAME, T)                                               \
    static void NAME(const T *restrict go, T *restrict g0, T *restrict g1, Py_ssize_t n, T dv) { \
        for (Py_ssize_t t = 0; t < n; t++) {                                               \
            T v = (T)0 + go[t] / dv;                                                       \
            g0[2 * t] = g0[2 * t + 1] = g1[2 * t] = g1[2 * t + 1] = v;                     \
        }                                                                                  \
    }
    #define FASTCONV_SPREAD_2X2(NAME, T, V, I, SHORT)                                         \
    static void NAME(const T *restrict go, T *restrict g0, T *restrict g1, Py_ssize_t n, T dv) { \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        I lo, hi;                                                                          \
        if (n < L) {                                                                       \
            SHORT(go, g0, g1, n, dv);                                                      \
            return;                                                                        \
        }                                                                                  \
        for (int i = 0; i < L; i++) {                                                      \
            lo[i] = i / 2;                                                                 \
            hi[i] = L / 2 + i / 2;                                                         \
        }                                                                                  \
        for (Py_ssize_t t = 0;; t += L) {                                                  \
            if (t > n - L)                                                                 \
                t = n - L;                                                                 \
            V v = (V){0} + FASTCONV_LD(V, go + t) / dv;                                    \
            V a = __builtin_shuffle(v, lo), b = __builtin_shuffle(v, hi);                  \
            FASTCONV_ST(V, g0 + 2 * t, a);                                                 \
            FASTCONV_ST(V, g0 + 2 * t + L, b);                                             \
            FASTCONV_ST(V, g1 + 2 * t, a);                                                 \
            FASTCONV_ST(V, g1 + 2 * t + L, b);                                             \
            if (t + L >= n)                                                                \
                break;                                                                     \
        }                                                                                  \
    }
    #define FASTCONV_SPREAD_2X2_ALL(NAME, T, VT, IT, HT, IHT)                                 \
        FASTCONV_SPREAD_2X2_SCALAR(NAME##_scalar, T)                                       \
        FASTCONV_SPREAD_2X2(NAME##_half, T, HT, IHT, NAME##_scalar)                        \
        FASTCONV_SPREAD_2X2(NAME, T, VT, IT, NAME##_half)
    FASTCONV_SPREAD_2X2_ALL(fastconv_spread_2x2_f, float, fastconv_vf, fastconv_if, fastconv_hf, fastconv_ihf)
    FASTCONV_SPREAD_2X2_ALL(fastconv_spread_2x2_d, double, fastconv_vd, fastconv_id, fastconv_hd, fastconv_ihd)
    """
    void fastconv_max_s2_f(const float* r, Py_ssize_t ld, int kh, int kw, float* o, Py_ssize_t n,
                           float unused) noexcept nogil
    void fastconv_max_s2_d(const double* r, Py_ssize_t ld, int kh, int kw, double* o, Py_ssize_t n,
                           double unused) noexcept nogil
    void fastconv_avg_s2_f(const float* r, Py_ssize_t ld, int kh, int kw, float* o, Py_ssize_t n,
                           float dv) noexcept nogil
    void fastconv_avg_s2_d(const double* r, Py_ssize_t ld, int kh, int kw, double* o, Py_ssize_t n,
                           double dv) noexcept nogil
    void fastconv_spread_2x2_f(const float* go, float* g0, float* g1, Py_ssize_t n, float dv) noexcept nogil
    void fastconv_spread_2x2_d(const double* go, double* g0, double* g1, Py_ssize_t n, double dv) noexcept nogil


cdef extern from *:
    """
    /* sum of r[0..n): two V accumulators over the whole vectors, their lanes added, then the
       tail in order */
    #define FASTCONV_ROW_SUM(NAME, T, V)                                                      \
    static T NAME(const T *restrict r, Py_ssize_t n) {                                     \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        V a = {0}, b = {0};                                                                \
        Py_ssize_t t = 0;                                                                  \
        T s = 0;                                                                           \
        for (; t + 2 * L <= n; t += 2 * L) {                                               \
            a += FASTCONV_LD(V, r + t);                                                    \
            b += FASTCONV_LD(V, r + t + L);                                                \
        }                                                                                  \
        if (t + L <= n) {                                                                  \
            a += FASTCONV_LD(V, r + t);                                                    \
            t += L;                                                                        \
        }                                                                                  \
        a += b;                                                                            \
        for (int i = 0; i < L; i++)                                                        \
            s += a[i];                                                                     \
        for (; t < n; t++)                                                                 \
            s += r[t];                                                                     \
        return s;                                                                          \
    }
    FASTCONV_ROW_SUM(fastconv_row_sum_f, float, fastconv_vf)
    FASTCONV_ROW_SUM(fastconv_row_sum_d, double, fastconv_vd)
    """
    float fastconv_row_sum_f(const float* r, Py_ssize_t n) noexcept nogil
    double fastconv_row_sum_d(const double* r, Py_ssize_t n) noexcept nogil


def global_avg_pool2d_forward_nchw(const floating[:, ::1] x, floating[::1] out, int num_threads):
    """out[p] := mean of the row x[p] (the planes of an NCHW array as rows of H*W), the rows on
    num_threads threads."""
    cdef Py_ssize_t P = x.shape[0], HW = x.shape[1], p
    cdef int nt = num_threads if num_threads > 0 else 1
    if out.shape[0] != P:
        raise ValueError(f"out must hold one mean per row. Received: {out.shape[0]} for {P} rows")
    if P == 0:
        return
    cdef const floating* xp = &x[0, 0]
    cdef floating* op = &out[0]
    with nogil, parallel(num_threads=nt):
        flush_denormals_enter()
        for p in prange(P, schedule="static"):
            if floating is float:
                op[p] = fastconv_row_sum_f(xp + p * HW, HW) / <float>HW
            else:
                op[p] = fastconv_row_sum_d(xp + p * HW, HW) / <double>HW
        flush_denormals_exit()


def global_avg_pool2d_forward_nhwc(const floating[:, :, ::1] x, floating[:, ::1] out, int num_threads):
    """out[n, c] := mean over s of x[n, s, c] (an NHWC array as (N, H*W, C)): each channel's
    sum in pixel order, vectorised over the channels, in (sample, channel block) tasks."""
    cdef Py_ssize_t N = x.shape[0], HW = x.shape[1], C = x.shape[2]
    cdef int nt = num_threads if num_threads > 0 else 1
    cdef Py_ssize_t cb, nblk, t, n, b, c, c0, c1, s
    if out.shape[0] != N or out.shape[1] != C:
        raise ValueError(f"out must be (N, C) = ({N}, {C}). Received: ({out.shape[0]}, {out.shape[1]})")
    if N == 0:
        return
    cb = _channel_block(N, C, nt)
    nblk = (C + cb - 1) // cb
    cdef const floating* xp = &x[0, 0, 0]
    cdef floating* op = &out[0, 0]
    cdef floating* o
    cdef const floating* r
    with nogil, parallel(num_threads=nt):
        flush_denormals_enter()
        for t in prange(N * nblk, schedule="static"):
            n = t // nblk
            b = t - n * nblk
            c0 = b * cb
            c1 = _imin(c0 + cb, C)
            o = op + n * C
            for c in range(c0, c1):
                o[c] = 0
            for s in range(HW):
                r = xp + (n * HW + s) * C
                for c in range(c0, c1):
                    o[c] = o[c] + r[c]
            for c in range(c0, c1):
                o[c] = o[c] / <floating>HW
        flush_denormals_exit()


cdef inline void _window_s2(const floating* r, Py_ssize_t ld, Py_ssize_t kh, Py_ssize_t kw, floating* o,
                            Py_ssize_t n, bint average, floating dv) noexcept nogil:
    """o[t] := the max, or (average) the sum / dv, of the kh x kw window at r + 2t, for t < n (see above)."""
    if not average:
        if floating is float:
            fastconv_max_s2_f(r, ld, <int>kh, <int>kw, o, n, 0)
        else:
            fastconv_max_s2_d(r, ld, <int>kh, <int>kw, o, n, 0)
    elif floating is float:
        fastconv_avg_s2_f(r, ld, <int>kh, <int>kw, o, n, dv)
    else:
        fastconv_avg_s2_d(r, ld, <int>kh, <int>kw, o, n, dv)


cdef void _max_fwd_plane_values_s2(const floating* x, floating* out,
                                   Py_ssize_t H, Py_ssize_t W, Py_ssize_t oH, Py_ssize_t oW, Py_ssize_t k,
                                   Py_ssize_t sh, Py_ssize_t pt, Py_ssize_t pl) noexcept nogil:
    """out := the max of each k x k window (k = 2 or 3, column stride 2, dilation 1), without indices.

    The windows of a row that lie inside the plane horizontally take the vector kernel on their
    in-bounds rows; the others, _max_one. Same selects in the same order as _max_fwd_plane.
    """
    cdef Py_ssize_t oh, ow, h0, h1, flo, fhi
    cdef int64_t unused
    cdef floating* orow
    _s2_interior(W, oW, k, pl, &flo, &fhi)
    for oh in range(oH):
        orow = out + oh * oW
        h0 = _imax(oh * sh - pt, 0)
        h1 = _imin(oh * sh - pt + k, H)
        if h0 >= h1:    # no input row in the windows: -inf, as the generic kernel
            for ow in range(oW):
                orow[ow] = -INFINITY
            continue
        if flo < fhi:
            _window_s2(x + h0 * W + 2 * flo - pl, W, h1 - h0, k, orow + flo, fhi - flo, False, 0)
        else:
            flo = fhi = oW
        for ow in range(flo):
            _max_one(x, orow + ow, &unused, W, h0, h1, 1, _imax(2 * ow - pl, 0), _imin(2 * ow - pl + k, W), 1)
        for ow in range(fhi, oW):
            _max_one(x, orow + ow, &unused, W, h0, h1, 1, _imax(2 * ow - pl, 0), _imin(2 * ow - pl + k, W), 1)


cdef enum:
    _CB = 64    # channels per block of the NHWC max kernel: the running max and argmax stay in a few registers


cdef inline void _max_window_nhwc(const floating* x, floating* o, int64_t* ind, idx_t first, Py_ssize_t n,
                                  Py_ssize_t W, Py_ssize_t C, Py_ssize_t h0, Py_ssize_t h1, Py_ssize_t dh,
                                  Py_ssize_t w0, Py_ssize_t w1, Py_ssize_t dw) noexcept nogil:
    """o[c], ind[c] := max over the window of x[ih, iw, c] and its flat position, for c < n <= _CB.

    The window's in-bounds rows are h0, h0 + dh, ... < h1 and columns w0, w0 + dw, ... < w1 (both nonempty);
    first = h0*W + w0. Starting from the first pixel is the same as starting from -inf with index first:
    a first value that is not taken from -inf is -inf itself.
    """
    cdef floating m[_CB]
    cdef idx_t q[_CB]
    cdef const floating* p = x + (h0 * W + w0) * C
    cdef Py_ssize_t c, ih, iw = w0 + dw
    cdef floating v, mm
    cdef bint take
    cdef idx_t idx
    for c in range(n):
        m[c] = p[c]
        q[c] = first
    ih = h0
    while ih < h1:
        while iw < w1:
            p = x + (ih * W + iw) * C
            idx = <idx_t>(ih * W + iw)
            for c in range(n):
                v = p[c]
                mm = m[c]
                take = (v > mm) | (v != v)
                m[c] = v if take else mm
                q[c] = idx if take else q[c]
            iw += dw
        iw = w0
        ih += dh
    for c in range(n):
        o[c] = m[c]
        ind[c] = q[c]


cdef void _max_fwd_row_nhwc(const floating* x, floating* out, int64_t* ind, idx_t* q, Py_ssize_t oh,
                            Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t oW,
                            Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                            Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw) noexcept nogil:
    """One output row of one sample, x (H, W, C), out/ind (oW, C); vectorised over C.

    q only selects the type of the running indices (as wide as floating, so the selects vectorise); its
    value is not used. Each window is reduced for _CB channels at a time, so that its running max and
    argmax stay in registers rather than going back to memory after every pixel.
    """
    cdef Py_ssize_t ow, c, h0, h1, w0, w1
    cdef idx_t first
    h0 = oh * sh - pt
    h1 = _imin(h0 + (kh - 1) * dh + 1, H)
    h0 = _first_in(h0, dh)
    for ow in range(oW):
        w0 = ow * sw - pl
        w1 = _imin(w0 + (kw - 1) * dw + 1, W)
        w0 = _first_in(w0, dw)
        first = <idx_t>(h0 * W + w0)
        if h0 >= h1 or w0 >= w1:    # no input in the window (possible with dilation): -inf, PyTorch's index
            for c in range(C):
                out[ow * C + c] = -INFINITY
                ind[ow * C + c] = first
            continue
        c = 0
        while c + _CB <= C:
            _max_window_nhwc(x + c, out + ow * C + c, ind + ow * C + c, first, _CB, W, C, h0, h1, dh, w0, w1, dw)
            c += _CB
        if c < C:
            _max_window_nhwc(x + c, out + ow * C + c, ind + ow * C + c, first, C - c, W, C, h0, h1, dh,
                             w0, w1, dw)


cdef struct _IndexRows:
    int64_t* base      # the indices array, or NULL: then each thread's row of scratch
    int64_t* scratch
    Py_ssize_t size    # indices per task (a plane, or a row of an NHWC sample)


cdef _IndexRows _index_rows(int64_t[:, :, :, ::1] indices, int nt, Py_ssize_t size) except *:
    """Where each task's indices go: the array's rows, or (indices None) per-thread scratch."""
    cdef _IndexRows rows
    rows.size = size
    rows.base = NULL
    rows.scratch = NULL
    if indices is not None:
        rows.base = &indices[0, 0, 0, 0]
        return rows
    rows.scratch = <int64_t*> malloc(nt * size * sizeof(int64_t))
    if rows.scratch == NULL:
        raise MemoryError()
    return rows


cdef inline int64_t* _index_row(const _IndexRows* rows, Py_ssize_t task) noexcept nogil:
    if rows.base != NULL:
        return rows.base + task * rows.size
    return rows.scratch + threadid() * rows.size


def max_pool2d_forward_nchw(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out,
                            int64_t[:, :, :, ::1] indices,
                            Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
                            Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                            int num_threads):
    """out[n, c] := max-pool(x[n, c]); indices[n, c] := flat ih*W + iw of each max.

    indices None: not kept (inference); each thread's plane of them goes to its scratch, which
    stays in cache, instead of 8 bytes per output to memory."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t oH = out.shape[2], oW = out.shape[3]
    cdef Py_ssize_t p, P = N * C, HW = H * W, oHW = oH * oW
    cdef int nt = num_threads if num_threads > 0 else 1
    if P == 0 or oHW == 0:
        return
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef floating* op = &out[0, 0, 0, 0]
    if (indices is None and dilation_h == 1 and dilation_w == 1 and stride_w == 2 and kernel_h == kernel_w
            and (kernel_h == 2 or kernel_h == 3)):
        # inference, 2x2 and 3x3 windows at column stride 2: the values-only vector kernel
        for p in prange(P, nogil=True, schedule="static", num_threads=nt):
            _max_fwd_plane_values_s2(xp + p * HW, op + p * oHW, H, W, oH, oW, kernel_h, stride_h, pad_top, pad_left)
        return
    cdef int32_t* scratch = NULL
    cdef int64_t* no64 = NULL
    cdef Py_ssize_t nbuf = 6 * (oW + 1)
    cdef _IndexRows rows = _index_rows(indices, nt, oHW)
    cdef floating* buf = <floating*> malloc(nt * nbuf * sizeof(floating))
    if buf == NULL:
        free(rows.scratch)
        raise MemoryError()
    if floating is float and HW < INT32_MAX:
        scratch = <int32_t*> malloc(nt * oW * sizeof(int32_t))
        if scratch == NULL:
            free(buf)
            free(rows.scratch)
            raise MemoryError()
        for p in prange(P, nogil=True, schedule="static", num_threads=nt):
            _max_fwd_plane(xp + p * HW, op + p * oHW, _index_row(&rows, p), scratch + threadid() * oW,
                           buf + threadid() * nbuf, H, W, oH, oW,
                           kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w)
        free(scratch)
    else:
        for p in prange(P, nogil=True, schedule="static", num_threads=nt):
            _max_fwd_plane(xp + p * HW, op + p * oHW, _index_row(&rows, p), no64, buf + threadid() * nbuf,
                           H, W, oH, oW,
                           kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w)
    free(buf)
    free(rows.scratch)


def max_pool2d_forward_nhwc(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out,
                            int64_t[:, :, :, ::1] indices,
                            Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
                            Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                            int num_threads):
    """out[n, :, :, c] := max-pool(x[n, :, :, c]); indices[n, oh, ow, c] := flat ih*W + iw of each max.

    indices None: not kept, as in max_pool2d_forward_nchw."""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t oH = out.shape[1], oW = out.shape[2]
    cdef Py_ssize_t p, n, oh, P = N * oH
    cdef int nt = num_threads if num_threads > 0 else 1
    if N == 0 or C == 0 or oH * oW == 0:
        return
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef floating* op = &out[0, 0, 0, 0]
    cdef _IndexRows rows = _index_rows(indices, nt, oW * C)
    cdef int32_t* as32 = NULL     # type tags for _max_fwd_row_nhwc's running indices
    cdef int64_t* as64 = NULL
    if floating is float and H * W < INT32_MAX:
        for p in prange(P, nogil=True, schedule="static", num_threads=nt):
            n = p // oH
            oh = p - n * oH
            _max_fwd_row_nhwc(xp + n * H * W * C, op + p * oW * C, _index_row(&rows, p), as32,
                              oh, H, W, C, oW, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left,
                              dilation_h, dilation_w)
    else:
        for p in prange(P, nogil=True, schedule="static", num_threads=nt):
            n = p // oH
            oh = p - n * oH
            _max_fwd_row_nhwc(xp + n * H * W * C, op + p * oW * C, _index_row(&rows, p), as64,
                              oh, H, W, C, oW, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left,
                              dilation_h, dilation_w)
    free(rows.scratch)


def max_pool2d_backward_nchw(const floating[:, :, :, ::1] grad_output, const int64_t[:, :, :, ::1] indices,
                             floating[:, :, :, ::1] grad_input, int num_threads):
    """grad_input[n, c].flat := 0; grad_input[n, c].flat[indices[n, c, oh, ow]] += grad_output[n, c, oh, ow].

    Returns whether every index lay in its plane: one outside is counted, never followed
    (the caller raises), so no separate pass over the indices checks them first."""
    cdef Py_ssize_t N = grad_input.shape[0], C = grad_input.shape[1]
    cdef Py_ssize_t HW = grad_input.shape[2] * grad_input.shape[3]
    cdef Py_ssize_t oHW = grad_output.shape[2] * grad_output.shape[3]
    cdef Py_ssize_t p, k, P = N * C, outside = 0
    cdef int64_t j
    cdef int nt = num_threads if num_threads > 0 else 1
    if P == 0:
        return True
    cdef floating* gi = &grad_input[0, 0, 0, 0]
    if oHW == 0:
        memset(gi, 0, P * HW * sizeof(floating))
        return True
    cdef const floating* go = &grad_output[0, 0, 0, 0]
    cdef const int64_t* ip = &indices[0, 0, 0, 0]
    cdef floating* g
    cdef const floating* o
    cdef const int64_t* q
    with nogil, parallel(num_threads=nt):
        flush_denormals_enter()
        for p in prange(P, schedule="static"):
            g = gi + p * HW
            o = go + p * oHW
            q = ip + p * oHW
            memset(g, 0, HW * sizeof(floating))
            for k in range(oHW):
                j = q[k]
                if 0 <= j < HW:
                    g[j] += o[k]
                else:
                    outside += 1
        flush_denormals_exit()
    return outside == 0


def max_pool2d_backward_nhwc(const floating[:, :, :, ::1] grad_output, const int64_t[:, :, :, ::1] indices,
                             floating[:, :, :, ::1] grad_input, int num_threads):
    """grad_input[n, :, :, c].flat := 0, then += grad_output[n, oh, ow, c] at indices[n, oh, ow, c].

    Returns whether every index lay in its plane, as max_pool2d_backward_nchw."""
    cdef Py_ssize_t N = grad_input.shape[0], H = grad_input.shape[1], W = grad_input.shape[2]
    cdef Py_ssize_t C = grad_input.shape[3]
    cdef Py_ssize_t oHW = grad_output.shape[1] * grad_output.shape[2]
    cdef Py_ssize_t HW = H * W, outside = 0
    cdef int nt = num_threads if num_threads > 0 else 1
    cdef Py_ssize_t cb, nblk
    cdef Py_ssize_t t, n, b, c, c0, c1, k, s
    cdef int64_t j
    if N == 0 or C == 0:
        return True
    cb = _channel_block(N, C, nt)
    nblk = (C + cb - 1) // cb
    cdef floating* gi = &grad_input[0, 0, 0, 0]
    if oHW == 0:
        memset(gi, 0, N * HW * C * sizeof(floating))
        return True
    cdef const floating* go = &grad_output[0, 0, 0, 0]
    cdef const int64_t* ip = &indices[0, 0, 0, 0]
    cdef floating* g
    cdef const floating* o
    cdef const int64_t* q
    with nogil, parallel(num_threads=nt):
        flush_denormals_enter()
        for t in prange(N * nblk, schedule="static"):
            n = t // nblk
            b = t - n * nblk
            c0 = b * cb
            c1 = _imin(c0 + cb, C)
            g = gi + n * HW * C
            if c0 == 0 and c1 == C:
                memset(g, 0, HW * C * sizeof(floating))
            else:
                for s in range(HW):
                    memset(g + s * C + c0, 0, (c1 - c0) * sizeof(floating))
            for k in range(oHW):
                o = go + (n * oHW + k) * C
                q = ip + (n * oHW + k) * C
                for c in range(c0, c1):
                    j = q[c]
                    if 0 <= j < HW:
                        g[j * C + c] += o[c]
                    else:
                        outside += 1
        flush_denormals_exit()
    return outside == 0


def max_pool2d_backward_tiles_nhwc(const floating[:, :, :, ::1] grad_output,
                                   const int64_t[:, :, :, ::1] indices, floating[:, :, :, ::1] grad_input,
                                   Py_ssize_t kernel_h, Py_ssize_t kernel_w, int num_threads):
    """max_pool2d_backward_nhwc where the windows tile the plane (stride = kernel, no padding or
    dilation, H = oH*kh, W = oW*kw), so that each element lies in one window: written once, as
    0 + grad_output where its window's index points at it and 0 elsewhere, with no clearing
    pass before the scatter. Returns False if some index lies outside its window (grad_input
    is then incomplete: the caller runs max_pool2d_backward_nhwc)."""
    cdef Py_ssize_t N = grad_input.shape[0], H = grad_input.shape[1], W = grad_input.shape[2]
    cdef Py_ssize_t C = grad_input.shape[3]
    cdef Py_ssize_t oH = grad_output.shape[1], oW = grad_output.shape[2]
    cdef Py_ssize_t row, n, oh, ow, i, j, c, pos
    cdef Py_ssize_t found = 0
    cdef int nt = num_threads if num_threads > 0 else 1
    if H != oH * kernel_h or W != oW * kernel_w:
        raise ValueError(f"the windows must tile the plane. Received: H={H}, W={W}, "
                         f"{kernel_h}x{kernel_w} windows, output {oH}x{oW}")
    if N * oH * oW * C == 0:
        return True
    cdef floating* gi = &grad_input[0, 0, 0, 0]
    cdef const floating* go = &grad_output[0, 0, 0, 0]
    cdef const int64_t* ip = &indices[0, 0, 0, 0]
    cdef floating* g
    cdef const floating* o
    cdef const int64_t* q
    with nogil, parallel(num_threads=nt):
        flush_denormals_enter()
        for row in prange(N * oH, schedule="static"):
            n = row // oH
            oh = row - n * oH
            for ow in range(oW):
                o = go + (row * oW + ow) * C
                q = ip + (row * oW + ow) * C
                for i in range(kernel_h):
                    for j in range(kernel_w):
                        pos = (oh * kernel_h + i) * W + ow * kernel_w + j
                        g = gi + (n * H * W + pos) * C
                        for c in range(C):
                            g[c] = (0 + o[c]) if q[c] == pos else 0
                            found += q[c] == pos
        flush_denormals_exit()
    return found == N * oH * oW * C


# ----------------------------------------------------------------------------------------------------------------
# average pooling
# ----------------------------------------------------------------------------------------------------------------

cdef inline Py_ssize_t _avg_divisor(Py_ssize_t h0, Py_ssize_t hpad_end, Py_ssize_t H,
                                    Py_ssize_t w0, Py_ssize_t wpad_end, Py_ssize_t W,
                                    Py_ssize_t kh, Py_ssize_t kw, bint count_include_pad,
                                    Py_ssize_t divisor_override) noexcept nogil:
    """PyTorch's divide_factor for the window starting at (h0, w0); 0 if the window holds no input."""
    cdef Py_ssize_t h1 = _imin(h0 + kh, hpad_end), w1 = _imin(w0 + kw, wpad_end)
    cdef Py_ssize_t pool_size = (h1 - h0) * (w1 - w0)
    h0 = _imax(h0, 0)
    w0 = _imax(w0, 0)
    h1 = _imin(h1, H)
    w1 = _imin(w1, W)
    if h0 >= h1 or w0 >= w1:
        return 0
    if divisor_override != 0:
        return divisor_override
    if count_include_pad:
        return pool_size
    return (h1 - h0) * (w1 - w0)


cdef inline floating _avg_one(const floating* x, Py_ssize_t H, Py_ssize_t W, Py_ssize_t h0, Py_ssize_t w0,
                              Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pb, Py_ssize_t pr,
                              bint count_include_pad, Py_ssize_t divisor_override) noexcept nogil:
    """The average over one window (top-left h0, w0) of the plane x, as the generic passes compute it."""
    cdef Py_ssize_t ih, iw, d
    cdef floating t = 0
    d = _avg_divisor(h0, H + pb, H, w0, W + pr, W, kh, kw, count_include_pad, divisor_override)
    if d == 0:
        return 0
    for ih in range(_imax(h0, 0), _imin(h0 + kh, H)):
        for iw in range(_imax(w0, 0), _imin(w0 + kw, W)):
            t = t + x[ih * W + iw]
    return t / <floating>d


cdef void _avg_fwd_plane(const floating* x, floating* out,
                         Py_ssize_t H, Py_ssize_t W, Py_ssize_t oH, Py_ssize_t oW,
                         Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                         Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr,
                         bint count_include_pad, Py_ssize_t divisor_override) noexcept nogil:
    """out[oh, ow] := sum_{in-input i,j} x[oh*sh - pt + i, ow*sw - pl + j] / divisor.

    2x2 and 3x3 stride 2: rows whose windows lie inside the input vertically take _window_s2 on the
    columns [flo, fhi) where they lie inside horizontally too (divisor kh*kw or the override there), and
    _avg_one on the others. Same sums in the same order as the generic passes.
    """
    cdef Py_ssize_t oh, ow, h0, h1, ih, j, off, lo, hi, d, flo = 0, fhi = 0
    cdef floating* orow
    cdef const floating* xrow
    cdef floating dv = <floating>(divisor_override if divisor_override != 0 else kh * kw)
    if sw == 2 and kh == kw and (kh == 2 or kh == 3):
        _s2_interior(W, oW, kw, pl, &flo, &fhi)
    for oh in range(oH):
        h0 = oh * sh - pt
        orow = out + oh * oW
        if flo < fhi and h0 >= 0 and h0 + kh <= H:
            _window_s2(x + h0 * W + 2 * flo - pl, W, kh, kw, orow + flo, fhi - flo, True, dv)
            for ow in range(flo):
                orow[ow] = _avg_one(x, H, W, h0, 2 * ow - pl, kh, kw, pb, pr, count_include_pad, divisor_override)
            for ow in range(fhi, oW):
                orow[ow] = _avg_one(x, H, W, h0, 2 * ow - pl, kh, kw, pb, pr, count_include_pad, divisor_override)
            continue
        h1 = _imin(_imin(h0 + kh, H + pb), H)
        for ow in range(oW):
            orow[ow] = 0
        for ih in range(_imax(h0, 0), h1):
            xrow = x + ih * W
            for j in range(kw):
                off = j - pl
                _out_range(off, sw, W, oW, &lo, &hi)
                for ow in range(lo, hi):
                    orow[ow] = orow[ow] + xrow[ow * sw + off]
        for ow in range(oW):
            d = _avg_divisor(h0, H + pb, H, ow * sw - pl, W + pr, W, kh, kw, count_include_pad, divisor_override)
            if d != 0:
                orow[ow] = orow[ow] / <floating>d
            else:
                orow[ow] = 0


cdef void _avg_bwd_plane(const floating* go, floating* gi, floating* g,
                         Py_ssize_t H, Py_ssize_t W, Py_ssize_t oH, Py_ssize_t oW,
                         Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                         Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr,
                         bint count_include_pad, Py_ssize_t divisor_override) noexcept nogil:
    """gi := 0; gi[window(oh, ow)] += go[oh, ow] / divisor; g is scratch of oW elements.

    Columns are visited with j descending so that every gi element receives its contributions in (oh, ow)
    order, as in PyTorch (bitwise identical sums). 2x2 stride 2 windows do not overlap: rows whose windows
    lie inside the input vertically take fastconv_spread_2x2 on the columns inside horizontally too.
    """
    cdef Py_ssize_t oh, ow, h0, h1, ih, j, off, lo, hi, d, flo = 0, fhi = 0, c0, c1
    cdef floating* girow
    cdef floating dv = <floating>(divisor_override if divisor_override != 0 else kh * kw)
    cdef bint tiled = (kh == 2 and kw == 2 and sh == 2 and sw == 2 and pt == 0 and pl == 0
                       and H == 2 * oH and W == 2 * oW)   # the windows cover the plane
    if kh == 2 and kw == 2 and sh == 2 and sw == 2:
        _s2_interior(W, oW, 2, pl, &flo, &fhi)
    if not tiled:
        memset(gi, 0, H * W * sizeof(floating))     # tiled: every element is written below
    for oh in range(oH):
        h0 = oh * sh - pt
        h1 = _imin(_imin(h0 + kh, H + pb), H)
        c0, c1 = oW, oW         # the columns for the generic passes: [0, c0) and [c1, oW)
        if flo < fhi and h0 >= 0 and h0 + kh <= H:
            # the windows do not overlap: each element gets one contribution, added to the zero
            # it was cleared to (0 + v: -0.0 becomes +0.0 as in PyTorch); writing it spares the load
            if floating is float:
                fastconv_spread_2x2_f(go + oh * oW + flo, gi + h0 * W + 2 * flo - pl, gi + (h0 + 1) * W + 2 * flo - pl,
                                      fhi - flo, dv)
            else:
                fastconv_spread_2x2_d(go + oh * oW + flo, gi + h0 * W + 2 * flo - pl, gi + (h0 + 1) * W + 2 * flo - pl,
                                      fhi - flo, dv)
            c0, c1 = flo, fhi
            if c0 == 0 and c1 == oW:
                continue
        for ow in range(oW):
            if c0 <= ow < c1:
                continue
            d = _avg_divisor(h0, H + pb, H, ow * sw - pl, W + pr, W, kh, kw, count_include_pad, divisor_override)
            g[ow] = go[oh * oW + ow] / <floating>d if d != 0 else 0
        for ih in range(_imax(h0, 0), h1):
            girow = gi + ih * W
            for j in range(kw - 1, -1, -1):
                off = j - pl
                _out_range(off, sw, W, oW, &lo, &hi)
                for ow in range(lo, _imin(hi, c0)):
                    girow[ow * sw + off] = girow[ow * sw + off] + g[ow]
                for ow in range(_imax(lo, c1), hi):
                    girow[ow * sw + off] = girow[ow * sw + off] + g[ow]


cdef void _avg_fwd_row_nhwc(const floating* x, floating* out, Py_ssize_t oh,
                            Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t oW,
                            Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                            Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr,
                            bint count_include_pad, Py_ssize_t divisor_override) noexcept nogil:
    """One output row of one sample, x (H, W, C), out (oW, C); vectorised over C."""
    cdef Py_ssize_t ow, c, h0, h1, w0, w1, ih, iw, d
    cdef floating* o
    cdef const floating* xp
    cdef floating dv
    h0 = oh * sh - pt
    h1 = _imin(_imin(h0 + kh, H + pb), H)
    for ow in range(oW):
        w0 = ow * sw - pl
        w1 = _imin(_imin(w0 + kw, W + pr), W)
        o = out + ow * C
        for c in range(C):
            o[c] = 0
        d = _avg_divisor(h0, H + pb, H, w0, W + pr, W, kh, kw, count_include_pad, divisor_override)
        if d == 0:
            continue
        for ih in range(_imax(h0, 0), h1):
            for iw in range(_imax(w0, 0), w1):
                xp = x + (ih * W + iw) * C
                for c in range(C):
                    o[c] = o[c] + xp[c]
        dv = <floating>d
        for c in range(C):
            o[c] = o[c] / dv


def avg_pool2d_forward_nchw(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out,
                            Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
                            Py_ssize_t pad_top, Py_ssize_t pad_bottom, Py_ssize_t pad_left, Py_ssize_t pad_right,
                            bint count_include_pad, Py_ssize_t divisor_override, int num_threads):
    """out[n, c] := avg-pool(x[n, c]) (PyTorch divisor rules; divisor_override 0 = none)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t oH = out.shape[2], oW = out.shape[3]
    cdef Py_ssize_t p, P = N * C, HW = H * W, oHW = oH * oW
    cdef int nt = num_threads if num_threads > 0 else 1
    if P == 0 or oHW == 0:
        return
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef floating* op = &out[0, 0, 0, 0]
    with nogil, parallel(num_threads=nt):
        flush_denormals_enter()
        for p in prange(P, schedule="static"):
            _avg_fwd_plane(xp + p * HW, op + p * oHW, H, W, oH, oW, kernel_h, kernel_w, stride_h, stride_w,
                           pad_top, pad_bottom, pad_left, pad_right, count_include_pad, divisor_override)
        flush_denormals_exit()


def avg_pool2d_forward_nhwc(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out,
                            Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
                            Py_ssize_t pad_top, Py_ssize_t pad_bottom, Py_ssize_t pad_left, Py_ssize_t pad_right,
                            bint count_include_pad, Py_ssize_t divisor_override, int num_threads):
    """out[n, :, :, c] := avg-pool(x[n, :, :, c]) (PyTorch divisor rules; divisor_override 0 = none)."""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t oH = out.shape[1], oW = out.shape[2]
    cdef Py_ssize_t p, n, oh, P = N * oH
    cdef int nt = num_threads if num_threads > 0 else 1
    if N == 0 or C == 0 or oH * oW == 0:
        return
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef floating* op = &out[0, 0, 0, 0]
    with nogil, parallel(num_threads=nt):
        flush_denormals_enter()
        for p in prange(P, schedule="static"):
            n = p // oH
            oh = p - n * oH
            _avg_fwd_row_nhwc(xp + n * H * W * C, op + p * oW * C, oh, H, W, C, oW, kernel_h, kernel_w,
                              stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right,
                              count_include_pad, divisor_override)
        flush_denormals_exit()


def avg_pool2d_backward_nchw(const floating[:, :, :, ::1] grad_output, floating[:, :, :, ::1] grad_input,
                             Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
                             Py_ssize_t pad_top, Py_ssize_t pad_bottom, Py_ssize_t pad_left, Py_ssize_t pad_right,
                             bint count_include_pad, Py_ssize_t divisor_override, int num_threads):
    """grad_input[n, c] := sum over windows containing each position of grad_output / divisor."""
    cdef Py_ssize_t N = grad_input.shape[0], C = grad_input.shape[1]
    cdef Py_ssize_t H = grad_input.shape[2], W = grad_input.shape[3]
    cdef Py_ssize_t oH = grad_output.shape[2], oW = grad_output.shape[3]
    cdef Py_ssize_t p, P = N * C, HW = H * W, oHW = oH * oW
    cdef int nt = num_threads if num_threads > 0 else 1
    if P == 0:
        return
    cdef floating* gi = &grad_input[0, 0, 0, 0]
    if oHW == 0:
        memset(gi, 0, P * HW * sizeof(floating))
        return
    cdef const floating* go = &grad_output[0, 0, 0, 0]
    cdef floating* scratch = <floating*> malloc(nt * oW * sizeof(floating))
    if scratch == NULL:
        raise MemoryError()
    with nogil, parallel(num_threads=nt):
        flush_denormals_enter()
        for p in prange(P, schedule="static"):
            _avg_bwd_plane(go + p * oHW, gi + p * HW, scratch + threadid() * oW, H, W, oH, oW,
                           kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right,
                           count_include_pad, divisor_override)
        flush_denormals_exit()
    free(scratch)


def avg_pool2d_backward_nhwc(const floating[:, :, :, ::1] grad_output, floating[:, :, :, ::1] grad_input,
                             Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
                             Py_ssize_t pad_top, Py_ssize_t pad_bottom, Py_ssize_t pad_left, Py_ssize_t pad_right,
                             bint count_include_pad, Py_ssize_t divisor_override, int num_threads):
    """grad_input[n, :, :, c] := sum over windows containing each position of grad_output / divisor."""
    cdef Py_ssize_t N = grad_input.shape[0], H = grad_input.shape[1], W = grad_input.shape[2]
    cdef Py_ssize_t C = grad_input.shape[3]
    cdef Py_ssize_t oH = grad_output.shape[1], oW = grad_output.shape[2]
    cdef Py_ssize_t HW = H * W, oHW = oH * oW
    cdef int nt = num_threads if num_threads > 0 else 1
    cdef Py_ssize_t cb, nblk
    cdef Py_ssize_t t, n, b, c, c0, c1, s, oh, ow, h0, h1, w0, w1, ih, iw, d
    if N == 0 or C == 0:
        return
    cb = _channel_block(N, C, nt)
    nblk = (C + cb - 1) // cb
    cdef floating* gi = &grad_input[0, 0, 0, 0]
    if oHW == 0:
        memset(gi, 0, N * HW * C * sizeof(floating))
        return
    cdef const floating* go = &grad_output[0, 0, 0, 0]
    cdef floating* scratch = <floating*> malloc(nt * cb * sizeof(floating))
    if scratch == NULL:
        raise MemoryError()
    cdef floating* g
    cdef floating* gp
    cdef floating* gv
    cdef const floating* o
    cdef floating dv, v
    # Windows that tile the plane (2x2 stride 2 on an even plane): each element gets exactly one
    # contribution, written as 0 + v (-0.0 becomes +0.0, as in the general path and PyTorch)
    # without clearing the sample first and adding to it: one pass over grad_input, not three.
    cdef bint tiled = (kernel_h == stride_h and kernel_w == stride_w and pad_top == 0
                       and pad_left == 0 and H == oH * kernel_h and W == oW * kernel_w)
    with nogil, parallel(num_threads=nt):
        flush_denormals_enter()
        for t in prange(N * nblk, schedule="static"):
            n = t // nblk
            b = t - n * nblk
            c0 = b * cb
            c1 = _imin(c0 + cb, C)
            g = gi + n * HW * C
            gv = scratch + threadid() * cb          # gv[c - c0] for c in [c0, c1)
            if tiled:
                dv = <floating>(divisor_override if divisor_override != 0 else kernel_h * kernel_w)
                for oh in range(oH):
                    for ow in range(oW):
                        o = go + ((n * oH + oh) * oW + ow) * C
                        gp = g + (oh * kernel_h * W + ow * kernel_w) * C    # the window's corner
                        if kernel_h == 2 and kernel_w == 2:     # one loop, four stores a value
                            for c in range(c0, c1):
                                v = 0 + o[c] / dv
                                gp[c] = v
                                gp[C + c] = v
                                gp[W * C + c] = v
                                gp[(W + 1) * C + c] = v
                            continue
                        for c in range(c0, c1):
                            gv[c - c0] = 0 + o[c] / dv
                        for ih in range(kernel_h):
                            for iw in range(kernel_w):
                                for c in range(c0, c1):
                                    gp[(ih * W + iw) * C + c] = gv[c - c0]
                continue
            if c0 == 0 and c1 == C:
                memset(g, 0, HW * C * sizeof(floating))
            else:
                for s in range(HW):
                    memset(g + s * C + c0, 0, (c1 - c0) * sizeof(floating))
            for oh in range(oH):
                h0 = oh * stride_h - pad_top
                h1 = _imin(_imin(h0 + kernel_h, H + pad_bottom), H)
                for ow in range(oW):
                    w0 = ow * stride_w - pad_left
                    w1 = _imin(_imin(w0 + kernel_w, W + pad_right), W)
                    d = _avg_divisor(h0, H + pad_bottom, H, w0, W + pad_right, W, kernel_h, kernel_w,
                                     count_include_pad, divisor_override)
                    if d == 0:
                        continue
                    dv = <floating>d
                    o = go + ((n * oH + oh) * oW + ow) * C
                    for c in range(c0, c1):
                        gv[c - c0] = o[c] / dv
                    for ih in range(_imax(h0, 0), h1):
                        for iw in range(_imax(w0, 0), w1):
                            gp = g + (ih * W + iw) * C
                            for c in range(c0, c1):
                                gp[c] = gp[c] + gv[c - c0]
        flush_denormals_exit()
    free(scratch)
