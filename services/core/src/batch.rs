//! Coalescing of concurrent requests into batches. Under load, a database round trip (or a
//! commit) costs far more than the rows it carries; answering every request that queued up while
//! the previous batches ran with one statement divides that cost among them. At low load a batch
//! holds one request and nothing waits: a request is only delayed while every slot is busy.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::Error;

/// Handles one batch: one output per input, in order.
pub type BatchHandler<I, O> =
    Arc<dyn Fn(Vec<I>) -> Pin<Box<dyn Future<Output = Result<Vec<O>, Error>> + Send>> + Send + Sync>;

struct Pending<I, O> {
    input: I,
    answer: oneshot::Sender<Result<O, Error>>,
}

/// Hands inputs to a dispatcher task that batches them. The task starts on first use, inside the
/// runtime, and ends when the last handle is dropped.
pub struct Batcher<I, O> {
    handler: BatchHandler<I, O>,
    slots: usize,
    max_batch: usize,
    queue: Arc<OnceLock<mpsc::UnboundedSender<Pending<I, O>>>>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            handler: self.handler.clone(),
            slots: self.slots,
            max_batch: self.max_batch,
            queue: self.queue.clone(),
        }
    }
}

impl<I, O> std::fmt::Debug for Batcher<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("slots", &self.slots)
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// At most `slots` batches run at once, each of at most `max_batch` inputs.
    pub fn new(slots: usize, max_batch: usize, handler: BatchHandler<I, O>) -> Batcher<I, O> {
        Batcher {
            handler,
            slots: slots.max(1),
            max_batch: max_batch.max(1),
            queue: Arc::new(OnceLock::new()),
        }
    }

    pub async fn submit(&self, input: I) -> Result<O, Error> {
        let answered = self.enqueue(input)?;
        answered
            .await
            .map_err(|_| Error::Internal("a batch was dropped".into()))?
    }

    /// Submits every input before waiting for any, so that they can share a batch.
    pub async fn submit_all(&self, inputs: Vec<I>) -> Result<Vec<O>, Error> {
        let waiting = inputs
            .into_iter()
            .map(|input| self.enqueue(input))
            .collect::<Result<Vec<_>, _>>()?;
        let mut outputs = Vec::with_capacity(waiting.len());
        for answered in waiting {
            outputs.push(
                answered
                    .await
                    .map_err(|_| Error::Internal("a batch was dropped".into()))??,
            );
        }
        Ok(outputs)
    }

    fn enqueue(&self, input: I) -> Result<oneshot::Receiver<Result<O, Error>>, Error> {
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(dispatch(
                self.handler.clone(),
                self.slots,
                self.max_batch,
                receiver,
            ));
            sender
        });
        let (answer, answered) = oneshot::channel();
        queue
            .send(Pending { input, answer })
            .map_err(|_| Error::Unavailable("the batcher has stopped".into()))?;
        Ok(answered)
    }
}

async fn dispatch<I: Send + 'static, O: Send + 'static>(
    handler: BatchHandler<I, O>,
    slots: usize,
    max_batch: usize,
    mut queue: mpsc::UnboundedReceiver<Pending<I, O>>,
) {
    let slots = Arc::new(Semaphore::new(slots));
    loop {
        // Wait for a free slot first: while every slot is busy, requests accumulate in the queue
        // and the next batch takes them all.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else { return };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        let handler = handler.clone();
        tokio::spawn(async move {
            let (inputs, answers): (Vec<I>, Vec<_>) = batch.into_iter().map(|p| (p.input, p.answer)).unzip();
            let n_inputs = inputs.len();
            match handler(inputs).await {
                Ok(outputs) if outputs.len() == n_inputs => {
                    for (answer, output) in answers.into_iter().zip(outputs) {
                        let _ = answer.send(Ok(output));
                    }
                }
                Ok(_) => {
                    for answer in answers {
                        let _ = answer.send(Err(Error::Internal(
                            "a batch answered the wrong number of results".into(),
                        )));
                    }
                }
                Err(error) => {
                    for answer in answers {
                        let _ = answer.send(Err(error.clone()));
                    }
                }
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_input_gets_its_own_output_and_concurrent_inputs_share_batches() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher: Batcher<u32, u32> = Batcher::new(
            1,
            64,
            Arc::new(move |inputs: Vec<u32>| {
                seen.lock().unwrap().push(inputs.len());
                Box::pin(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    Ok(inputs.into_iter().map(|i| i * 2).collect())
                })
            }),
        );
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50u32 {
            let batcher = batcher.clone();
            tasks.spawn(async move { (i, batcher.submit(i).await.unwrap()) });
        }
        while let Some(joined) = tasks.join_next().await {
            let (input, output) = joined.unwrap();
            assert_eq!(output, input * 2);
        }
        assert!(sizes.lock().unwrap().len() < 50, "some inputs shared a batch");
    }
}
