// TaskLog: where a TaskStore sends its state changes, one LogRecord (store/task_log.proto) each,
// in the order it makes them. The write-ahead log implements it; a store without a log keeps its
// state in memory only.
#ifndef HOURGLASS_STORE_TASK_LOG_H_
#define HOURGLASS_STORE_TASK_LOG_H_

#include <cstdint>

#include "store/task_log.pb.h"

namespace hourglass {

class TaskLog {
 public:
  virtual ~TaskLog() = default;

  // Takes `record`, the change just made. Called with the store's lock held, in the order of the
  // changes: quick, no I/O, no calls back into the store. Returns the record's log sequence
  // number (increasing); the change is durable once the log says that LSN is.
  virtual uint64_t Append(const store::v1::LogRecord& record) = 0;
};

}  // namespace hourglass

#endif  // HOURGLASS_STORE_TASK_LOG_H_
