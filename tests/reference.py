"""Plain NumPy (float64, loops) references for the losses, written from docs/methods.md."""
import numpy as np


def normalize(x):
    """Rows divided by their norm; a zero row stays zero."""
    x = np.asarray(x, dtype="float64")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def distances(x):
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def positives(d, y, i, strategy):
    idx = [j for j in range(len(y)) if j != i and y[j] == y[i]]
    if not idx or strategy == "all":
        return idx
    pick = min if strategy == "easy" else max
    best = pick(d[i, j] for j in idx)
    return [next(j for j in idx if d[i, j] == best)]


def negatives(d, y, i, strategy, threshold=None, fallback="nearest"):
    """The negatives of anchor `i`; semi-hard: the nearest with `d > threshold`, else the
    nearest or farthest negative, or none (`fallback`)."""
    idx = [k for k in range(len(y)) if y[k] != y[i]]
    if not idx or strategy == "all":
        return idx
    if strategy == "semihard":
        beyond = [k for k in idx if d[i, k] > threshold]
        if not beyond:
            if fallback == "none":
                return []
            if fallback == "farthest":
                return [max(idx, key=lambda k: d[i, k])]
        idx = beyond or idx
    return [min(idx, key=lambda k: d[i, k])]


def contrastive(x, y, pos_margin=0.0, neg_margin=0.5, positive="all", negative="all", semihard_fallback="nearest"):
    x = normalize(x)
    d = distances(x)
    terms = []
    for i in range(len(y)):
        p = positives(d, y, i, positive)
        if negative == "semihard":
            n = negatives(d, y, i, negative, min(d[i, j] for j in p), semihard_fallback) if p else []
        else:
            n = negatives(d, y, i, negative)
        if not p and not n:
            continue
        term = np.mean([max(d[i, j] - pos_margin, 0) ** 2 for j in p]) if p else 0.0
        term += np.mean([max(neg_margin - d[i, k], 0) ** 2 for k in n]) if n else 0.0
        terms.append(term)
    return np.mean(terms) if terms else 0.0


def triplet(x, y, margin=0.2, positive="all", negative="all", semihard_fallback="nearest"):
    x = normalize(x)
    d = distances(x)
    terms = []
    for i in range(len(y)):
        values = []
        for j in positives(d, y, i, positive):
            # mean over this positive's negatives, then over the anchor's positives
            hinges = [max(d[i, j] - d[i, k] + margin, 0) for k in negatives(d, y, i, negative, d[i, j], semihard_fallback)]
            if hinges:
                values.append(np.mean(hinges))
        if values:
            terms.append(np.mean(values))
    return np.mean(terms) if terms else 0.0


def npair(x, y, temperature=0.1, positive="all", negative="all", semihard_fallback="nearest"):
    x = normalize(x)
    d, s = distances(x), x @ x.T
    terms = []
    for i in range(len(y)):
        values = []
        for j in positives(d, y, i, positive):
            n = negatives(d, y, i, negative, d[i, j], semihard_fallback)
            if n:
                values.append(np.log1p(sum(np.exp((s[i, k] - s[i, j]) / temperature) for k in n)))
        if values:
            terms.append(np.mean(values))
    return np.mean(terms) if terms else 0.0


def multi_similarity(x, y, alpha=2.0, beta=50.0, base=0.5, epsilon=0.1):
    x = normalize(x)
    s = x @ x.T
    terms = []
    for i in range(len(y)):
        p = [j for j in range(len(y)) if j != i and y[j] == y[i]]
        n = [k for k in range(len(y)) if y[k] != y[i]]
        if not p or not n:
            continue
        max_neg, min_pos = max(s[i, n]), min(s[i, p])
        kept_p = [j for j in p if s[i, j] - epsilon < max_neg]
        kept_n = [k for k in n if s[i, k] + epsilon > min_pos]
        pos = np.log1p(sum(np.exp(-alpha * (s[i, j] - base)) for j in kept_p)) / alpha
        neg = np.log1p(sum(np.exp(beta * (s[i, k] - base)) for k in kept_n)) / beta
        terms.append(pos + neg)
    return np.mean(terms) if terms else 0.0


# Classification-style criteria (keras_dml/losses/classification.py): one sample at a time.

def _cross_entropy(logits, target):
    """`log sum_c exp(logits_c) - logits_target` for one sample."""
    top = max(logits)
    return top + np.log(sum(np.exp(v - top) for v in logits)) - logits[target]


def _cosines(x, proxies):
    """Cosines `(n, C)` or `(n, C, K)` between samples and each class's proxies."""
    return np.einsum("nd,c...d->nc...", normalize(x), normalize(proxies.reshape(-1, proxies.shape[-1])).reshape(proxies.shape))


def normalized_softmax(x, y, proxies, temperature=0.05):
    c = _cosines(x, proxies)
    return np.mean([_cross_entropy(c[i] / temperature, y[i]) for i in range(len(y))]) if len(y) else 0.0


def cosface(x, y, proxies, margin=0.35, scale=64.0):
    terms = []
    for i in range(len(y)):
        logits = scale * _cosines(x, proxies)[i]
        logits[y[i]] -= scale * margin
        terms.append(_cross_entropy(logits, y[i]))
    return np.mean(terms) if terms else 0.0


def arcface(x, y, proxies, margin=0.5, scale=64.0):
    """ArcFace; proxies `(C, K, D)` make it sub-center ArcFace (the best sub-center's cosine)."""
    c = _cosines(x, proxies)
    if c.ndim == 3:
        c = c.max(axis=2)
    terms = []
    for i in range(len(y)):
        cosine = c[i, y[i]]
        angle = np.arccos(np.clip(cosine, -1.0, 1.0))
        logits = scale * c[i].copy()
        logits[y[i]] = scale * (np.cos(angle + margin) if angle <= np.pi - margin else cosine - margin * np.sin(margin))
        terms.append(_cross_entropy(logits, y[i]))
    return np.mean(terms) if terms else 0.0


def soft_triple(x, y, proxies, la=20.0, gamma=0.1, margin=0.01, tau=0.0):
    c = _cosines(x, proxies)  # (n, C, K)
    num_classes, k = proxies.shape[:2]
    terms = []
    for i in range(len(y)):
        logits = []
        for cls in range(num_classes):
            weights = np.exp(c[i, cls] / gamma - np.max(c[i, cls] / gamma))
            similarity = np.sum(weights / weights.sum() * c[i, cls])
            logits.append(la * (similarity - (margin if cls == y[i] else 0.0)))
        terms.append(_cross_entropy(logits, y[i]))
    centers = normalize(proxies.reshape(-1, proxies.shape[-1])).reshape(proxies.shape)
    spread = sum(np.sqrt(2 + 1e-5 - 2 * centers[cls, a] @ centers[cls, b])
                 for cls in range(num_classes) for a in range(k) for b in range(a + 1, k))
    regularizer = spread / (num_classes * k * (k - 1)) if k > 1 else 0.0
    return np.mean(terms) + tau * regularizer if terms else 0.0


def proxy_nca(x, y, proxies, scale=1.0, distance="squared_euclidean"):
    x, p = normalize(x), normalize(proxies)
    terms = []
    for i in range(len(y)):
        if distance in ("cosine", "dot"):
            logits = [scale * (x[i] @ p[cls]) for cls in range(len(p))]
        else:
            power = 2 if distance == "squared_euclidean" else 1
            logits = [-scale * np.linalg.norm(x[i] - p[cls]) ** power for cls in range(len(p))]
        terms.append(_cross_entropy(logits, y[i]))
    return np.mean(terms) if terms else 0.0
