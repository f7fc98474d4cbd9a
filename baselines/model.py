"""The classical classifier: scaled features, an SVM, calibrated probabilities, mirror averaging.

`OCTSVMClassifier` follows scikit-learn's conventions (fit returns self, fitted attributes end in
`_`) and works on feature arrays of shape (n, 2, d) from `features.extract`: each scan with its
mirror image. Training sees both views; prediction averages the two views' probabilities.
"""
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.kernel_approximation import Nystroem
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

SOLVERS = ("rbf", "nystroem", "linear")
EXACT_LIMIT = 10_000  # 'auto' uses the exact kernel SVM below this many training scans


class OCTSVMClassifier(ClassifierMixin, BaseEstimator):
    """SVM on mirrored HOG/LBP feature pairs.

    solver: 'rbf' (exact kernel SVM, small data), 'nystroem' (RBF kernel approximation + linear
    SVM, scales to the full 84k dataset), 'linear', or 'auto'. gamma_scale multiplies 1/d.
    """

    def __init__(self, solver: str = "auto", C: float = 10.0, gamma_scale: float = 0.5,
                 n_components: int = 2000, calibration_folds: int = 3, random_state: int = 0):
        self.solver, self.C, self.gamma_scale = solver, C, gamma_scale
        self.n_components, self.calibration_folds, self.random_state = n_components, calibration_folds, random_state

    def _svm(self, n_train: int, n_features: int):
        solver = self.solver if self.solver != "auto" else ("rbf" if n_train < EXACT_LIMIT else "nystroem")
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose auto or one of {', '.join(SOLVERS)}")
        gamma = self.gamma_scale / n_features
        if solver == "rbf":
            return solver, make_pipeline(StandardScaler(), SVC(C=self.C, gamma=gamma))
        if solver == "nystroem":
            kernel = Nystroem(gamma=gamma, n_components=min(self.n_components, n_train), random_state=self.random_state)
            return solver, make_pipeline(StandardScaler(), kernel, LinearSVC(C=self.C / 100))
        return solver, make_pipeline(StandardScaler(), LinearSVC(C=self.C / 1000))

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> "OCTSVMClassifier":
        """X: (n, 2, d) feature pairs; groups: patient (or linked) ids, so calibration folds never split a patient."""
        X, y = np.asarray(X), np.asarray(y)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        both = X.reshape(-1, X.shape[-1])  # each scan's two views, side by side
        self.solver_, svm = self._svm(len(y), X.shape[-1])
        folds = StratifiedGroupKFold(self.calibration_folds, shuffle=True, random_state=self.random_state)
        splits = list(folds.split(both, np.repeat(y, 2), np.repeat(groups, 2)))
        self.model_ = CalibratedClassifierCV(svm, method="sigmoid", cv=splits, ensemble=False).fit(both, np.repeat(y, 2))
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        proba = self.model_.predict_proba(X.reshape(-1, X.shape[-1])).reshape(len(X), 2, -1)
        return proba.mean(axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
