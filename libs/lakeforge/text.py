"""Text features: normalize, tokenize, drop stop words, stem, add n-grams, then TF-IDF.

The issue asks for Spark NLP annotators. Spark NLP publishes no build for Spark 4 / Scala 2.13 on
Maven Central (`com.johnsnowlabs.nlp:spark-nlp_2.13` does not exist; `spark-nlp_2.12:5.5.3` is
built for Spark 3 and cannot load in a Spark 4 JVM), so the same stages are built from Spark ML,
which ships with pyspark and needs no download: RegexTokenizer (normalizer + tokenizer),
StopWordsRemover (Spark's bundled English list), a suffix stemmer in SQL, NGram, HashingTF and IDF.
The pipeline is fitted once by the features job and saved, and the features job stores its output,
the TF-IDF vector, in the feature table: training and scoring read vectors and never run the pipeline,
which costs several times what the rest of the model does. An incremental refresh applies the saved
pipeline to the new rows, never refits it.
"""

from __future__ import annotations

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import (
    IDF,
    HashingTF,
    NGram,
    RegexTokenizer,
    SQLTransformer,
    StopWordsRemover,
    VectorSizeHint,
)
from pyspark.sql import DataFrame

from lakeforge.config import TextPipeline

# Strips common English inflections from words long enough to keep a stem: "crashes" -> "crash",
# "charged" -> "charg", "working" -> "work". Crude next to Snowball, but deterministic and shipped.
_STEM_SQL = (
    "transform({tokens}, t -> CASE "
    "WHEN length(t) > 5 AND t LIKE '%ing' THEN substr(t, 1, length(t) - 3) "
    "WHEN length(t) > 4 AND t LIKE '%ed' THEN substr(t, 1, length(t) - 2) "
    "WHEN length(t) > 4 AND t LIKE '%es' THEN substr(t, 1, length(t) - 2) "
    "WHEN length(t) > 3 AND t LIKE '%s' AND t NOT LIKE '%ss' THEN substr(t, 1, length(t) - 1) "
    "ELSE t END)"
)


def column_names(spec: TextPipeline) -> dict[str, str]:
    """The columns the pipeline adds, all named after the text column."""
    base = spec.column
    return {
        "tokens": f"{base}__tokens",
        "words": f"{base}__words",
        "stems": f"{base}__stems",
        "ngrams": f"{base}__ngrams",
        "terms": f"{base}__terms",
        "tf": f"{base}__tf",
        "tfidf": f"{base}_tfidf",
    }


def build_text_pipeline(spec: TextPipeline) -> Pipeline:
    """An unfitted pipeline from `spec.column` (a string) to `<column>_tfidf` (a sparse vector)."""
    names = column_names(spec)
    stages = [
        SQLTransformer(statement=f"SELECT *, coalesce(`{spec.column}`, '') AS `{spec.column}__text` FROM __THIS__"),
        RegexTokenizer(inputCol=f"{spec.column}__text", outputCol=names["tokens"], pattern="[^a-z]+", minTokenLength=2),
        StopWordsRemover(inputCol=names["tokens"], outputCol=names["words"]),
        SQLTransformer(
            statement=f"SELECT *, {_STEM_SQL.format(tokens='`' + names['words'] + '`')} AS `{names['stems']}` "
            "FROM __THIS__"
        ),
    ]
    if spec.ngrams > 1:
        stages.append(NGram(n=spec.ngrams, inputCol=names["stems"], outputCol=names["ngrams"]))
        stages.append(
            SQLTransformer(
                statement=f"SELECT *, concat(`{names['stems']}`, `{names['ngrams']}`) AS `{names['terms']}` "
                "FROM __THIS__"
            )
        )
    else:
        stages.append(SQLTransformer(statement=f"SELECT *, `{names['stems']}` AS `{names['terms']}` FROM __THIS__"))
    stages += [
        HashingTF(inputCol=names["terms"], outputCol=names["tf"], numFeatures=spec.num_features),
        IDF(inputCol=names["tf"], outputCol=names["tfidf"], minDocFreq=spec.min_doc_freq),
    ]
    return Pipeline(stages=stages)


def fit_text_pipeline(rows: DataFrame, spec: TextPipeline) -> PipelineModel:
    """Fit the pipeline (the IDF weights) on the rows' text."""
    return build_text_pipeline(spec).fit(rows.select(spec.column))


def vector_column(spec: TextPipeline) -> str:
    """The column a text feature table stores: the TF-IDF vector of `spec.column`."""
    return column_names(spec)["tfidf"]


def vectorize(model: PipelineModel, rows: DataFrame, spec: TextPipeline) -> DataFrame:
    """The rows with their text replaced by its TF-IDF vector (the fitted pipeline applied, not refit)."""
    kept = [c for c in rows.columns if c != spec.column]
    return model.transform(rows).select(*kept, vector_column(spec))


def zero_filled_vector_stages(vector: str, size: int) -> list:
    """Model stages that give an entity without text (a null vector after the as-of join) the vector of
    empty text, all zeros, and declare the vector's size, which the assembler needs to keep invalid rows.

    The zeros come from hashing an empty term list in the JVM: no Python UDF, nothing per row in Python.
    """
    empty, zeros = f"{vector}__no_terms", f"{vector}__zeros"
    return [
        SQLTransformer(statement=f"SELECT *, CAST(array() AS array<string>) AS `{empty}` FROM __THIS__"),
        HashingTF(inputCol=empty, outputCol=zeros, numFeatures=size),
        SQLTransformer(
            statement=f"SELECT * EXCEPT (`{empty}`, `{zeros}`, `{vector}`), "
            f"coalesce(`{vector}`, `{zeros}`) AS `{vector}` FROM __THIS__"
        ),
        VectorSizeHint(inputCol=vector, size=size, handleInvalid="error"),
    ]
