"""Spans of the other capabilities' work, on both stores: an iterator's steps and a bulk
job's chunks, each named with its job."""

from __future__ import annotations

from batchyard import Page


def test_an_iterator_step_has_a_span_naming_its_job(yard, spans):
    @yard.handler("source")
    def source(cursor, batch_size):
        start = cursor or 0
        return Page(items=list(range(start, min(start + batch_size, 25))), cursor=start + 10)

    @yard.handler("process")
    def process(items, ctx):
        pass

    yard.start_iterator(
        "walk",
        batch_size=10,
        get_next_batch="source",
        process_batch="process",
        delay_between_batches=0,
    )
    yard.run_worker(wait=False)
    assert yard.get_iterator_status("walk").status == "completed"
    steps = spans.all("batchyard.iterator.step")
    assert steps and all(s.attributes["batchyard.job_id"] == "walk" for s in steps)
    assert steps[0].attributes["batchyard.attempt"] == 1


def test_bulk_job_chunks_have_spans_naming_their_job(yard, spans):
    things = [{"ns": "p", "id": f"t{n}", "type": "T", "data": {}} for n in range(5)]
    job_id = yard.create_batch_job("import-things", things)
    yard.run_worker(wait=False)
    chunks = spans.all("batchyard.bulk.chunk") + spans.all("batchyard.bulk.chunks")
    assert chunks and {c.attributes["batchyard.job_id"] for c in chunks} == {job_id}
    assert sum(c.attributes["batchyard.task_count"] for c in chunks) >= 1
    assert yard.get_batch_job(job_id).status == "completed"
