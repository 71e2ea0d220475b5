#pragma version 0.4.3
# @title Devnet stand-in for the era-D Crynux TaskQueue
# @notice Holds createTask calls that found no free nodes. The client-visible
#         surface (`include`, `size`, `getSizeLimit`, `owner`) has the real ABI;
#         the storage is a plain array instead of the real heaps (the queue is
#         small, default limit 50, so linear scans are cheap enough).

struct TaskInQueue:
    id: uint256
    taskType: uint256
    creator: address
    taskHash: bytes32
    dataHash: bytes32
    vramLimit: uint256
    taskFee: uint256
    price: uint256

event OwnershipTransferred:
    previousOwner: indexed(address)
    newOwner: indexed(address)

MAX_QUEUE: constant(uint256) = 1024

owner: public(address)
taskContractAddress: address
sizeLimit: uint256

ids: DynArray[uint256, MAX_QUEUE]
# index + 1 of a task id in `ids`; 0 = not queued
position: HashMap[uint256, uint256]
items: HashMap[uint256, TaskInQueue]


@deploy
def __init__():
    self.owner = msg.sender
    self.sizeLimit = 50
    log OwnershipTransferred(previousOwner=empty(address), newOwner=msg.sender)


@internal
def _onlyOwner():
    assert msg.sender == self.owner, "Ownable: caller is not the owner"


@internal
def _onlyTaskContract():
    assert msg.sender == self.taskContractAddress, "Not called by the task contract"


@external
def updateTaskContractAddress(taskContract: address):
    self._onlyOwner()
    self.taskContractAddress = taskContract


@external
def updateSizeLimit(limit: uint256):
    self._onlyOwner()
    assert limit <= MAX_QUEUE, "Size limit too large for the devnet"
    self.sizeLimit = limit


@view
@external
def size() -> uint256:
    return len(self.ids)


@view
@external
def getSizeLimit() -> uint256:
    return self.sizeLimit


@view
@external
def include(taskId: uint256) -> bool:
    return self.position[taskId] != 0


@external
def pushTask(
    taskId: uint256,
    taskType: uint256,
    creator: address,
    taskHash: bytes32,
    dataHash: bytes32,
    vramLimit: uint256,
    taskFee: uint256,
    price: uint256,
):
    self._onlyTaskContract()
    assert taskType == 0 or taskType == 1, "Invalid task type"
    assert len(self.ids) < self.sizeLimit, "Task queue is full"
    self.items[taskId] = TaskInQueue(
        id=taskId,
        taskType=taskType,
        creator=creator,
        taskHash=taskHash,
        dataHash=dataHash,
        vramLimit=vramLimit,
        taskFee=taskFee,
        price=price,
    )
    self.ids.append(taskId)
    self.position[taskId] = len(self.ids)


@internal
def _remove(taskId: uint256) -> TaskInQueue:
    # swap-and-pop; order in `ids` carries no meaning (ties are broken by id)
    idx: uint256 = self.position[taskId] - 1
    last: uint256 = self.ids.pop()
    if last != taskId:
        self.ids[idx] = last
        self.position[last] = idx + 1
    self.position[taskId] = 0
    task: TaskInQueue = self.items[taskId]
    self.items[taskId] = empty(TaskInQueue)
    return task


@external
def popTask(sameGPU: bool, vramLimit: uint256) -> TaskInQueue:
    # Highest price among tasks the freed nodes can run. Like the real queue it
    # never returns a task whose price is 0 ("No available task").
    self._onlyTaskContract()
    assert len(self.ids) > 0, "No available task"
    bestId: uint256 = 0
    bestPrice: uint256 = 0
    for taskId: uint256 in self.ids:
        task: TaskInQueue = self.items[taskId]
        if task.taskType == 1 and not sameGPU:
            continue
        if task.vramLimit > vramLimit:
            continue
        if task.price > bestPrice or (task.price == bestPrice and bestPrice > 0 and taskId < bestId):
            bestPrice = task.price
            bestId = taskId
    assert bestPrice > 0, "No available task"
    return self._remove(bestId)


@external
def removeTask(taskId: uint256) -> TaskInQueue:
    self._onlyTaskContract()
    assert self.position[taskId] != 0, "Task is not in queue"
    return self._remove(taskId)


@external
def removeCheapestTask() -> TaskInQueue:
    # Lowest price; among equal prices the newest task goes first.
    self._onlyTaskContract()
    assert len(self.ids) > 0, "No available task"
    worstId: uint256 = 0
    worstPrice: uint256 = max_value(uint256)
    for taskId: uint256 in self.ids:
        price: uint256 = self.items[taskId].price
        if price < worstPrice or (price == worstPrice and taskId > worstId):
            worstPrice = price
            worstId = taskId
    return self._remove(worstId)
