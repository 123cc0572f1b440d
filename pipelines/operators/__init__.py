"""The built-in operators, one per module. ``BUILTIN_OPERATORS`` is what the default registry offers."""

from pipelines.operators.accuracy_evaluator import AccuracyEvaluator
from pipelines.operators.base import DataType, Operator, OperatorConfig, OperatorEnv, Port, RunContext
from pipelines.operators.chunker import Chunker
from pipelines.operators.csv_source import CsvSource
from pipelines.operators.embedder import Embedder
from pipelines.operators.f1_evaluator import F1Evaluator
from pipelines.operators.file_sink import FileSink
from pipelines.operators.file_source import FileSource
from pipelines.operators.generator import Generator
from pipelines.operators.join_text import JoinText
from pipelines.operators.json_source import JsonSource
from pipelines.operators.memory_sink import MemorySink
from pipelines.operators.merge_documents import MergeDocuments
from pipelines.operators.print_sink import PrintSink
from pipelines.operators.promptor import Promptor
from pipelines.operators.recall_evaluator import RecallEvaluator
from pipelines.operators.reranker import Reranker
from pipelines.operators.retriever import Retriever
from pipelines.operators.text_input import TextInput
from pipelines.operators.text_template import TextTemplate

BUILTIN_OPERATORS: tuple[type[Operator], ...] = (
    TextInput,
    FileSource,
    JsonSource,
    CsvSource,
    Chunker,
    TextTemplate,
    Embedder,
    Retriever,
    Reranker,
    MergeDocuments,
    JoinText,
    Promptor,
    Generator,
    F1Evaluator,
    RecallEvaluator,
    AccuracyEvaluator,
    PrintSink,
    FileSink,
    MemorySink,
)

__all__ = ["BUILTIN_OPERATORS", "DataType", "Operator", "OperatorConfig", "OperatorEnv", "Port", "RunContext"]
