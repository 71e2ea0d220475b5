#pragma version 0.4.3
# @title Devnet stand-in for the era-D Crynux Task contract (crynux-contracts@4c2d581)
# @notice Everything a client can call or observe has the real ABI and behaviour:
#         createTask / getTask / cancelTask / totalTasks, the events (same
#         indexed params and topic0), the revert strings, the queue fallback,
#         deletion of finished tasks and the deadline.
#         What the real network does with Node/QOS/NetworkStats contracts and
#         the commit/disclose protocol is replaced by owner-only `dev*`
#         functions that the devnet's simulated nodes call.

interface TaskQueue:
    def size() -> uint256: view
    def getSizeLimit() -> uint256: view
    def include(taskId: uint256) -> bool: view
    def pushTask(taskId: uint256, taskType: uint256, creator: address, taskHash: bytes32, dataHash: bytes32, vramLimit: uint256, taskFee: uint256, price: uint256): nonpayable
    def removeTask(taskId: uint256) -> TaskInQueue: nonpayable
    def removeCheapestTask() -> TaskInQueue: nonpayable

struct TaskInQueue:
    id: uint256
    taskType: uint256
    creator: address
    taskHash: bytes32
    dataHash: bytes32
    vramLimit: uint256
    taskFee: uint256
    price: uint256

MAX_RESULT: constant(uint256) = 1024
MAX_NODES: constant(uint256) = 1024
MAX_BATCH: constant(uint256) = 128
# queued tasks started per transaction (bounds the gas of node-freeing calls)
MAX_START: constant(uint256) = 16

# Field order and types are those of Task.sol's TaskInfo (18 fields).
struct TaskInfo:
    id: uint256
    taskType: uint256
    creator: address
    taskHash: bytes32
    dataHash: bytes32
    vramLimit: uint256
    isSuccess: bool
    selectedNodes: DynArray[address, 3]
    commitments: DynArray[bytes32, 3]
    nonces: DynArray[bytes32, 3]
    commitmentSubmitRounds: DynArray[uint256, 3]
    results: DynArray[Bytes[MAX_RESULT], 3]
    resultDisclosedRounds: DynArray[uint256, 3]
    resultNode: address
    aborted: bool
    timeout: uint256
    balance: uint256
    totalBalance: uint256

event OwnershipTransferred:
    previousOwner: indexed(address)
    newOwner: indexed(address)

event TaskPending:
    taskId: uint256
    taskType: uint256
    creator: indexed(address)
    taskHash: bytes32
    dataHash: bytes32

event TaskStarted:
    taskId: uint256
    taskType: uint256
    creator: indexed(address)
    selectedNode: indexed(address)
    taskHash: bytes32
    dataHash: bytes32
    round: uint256

event TaskResultCommitmentsReady:
    taskId: indexed(uint256)

event TaskSuccess:
    taskId: indexed(uint256)
    result: Bytes[MAX_RESULT]
    resultNode: indexed(address)

event TaskAborted:
    taskId: indexed(uint256)
    reason: String[64]

event TaskResultUploaded:
    taskId: indexed(uint256)

event TaskNodeSuccess:
    taskId: indexed(uint256)
    nodeAddress: address
    fee: uint256

event TaskNodeSlashed:
    taskId: indexed(uint256)
    nodeAddress: address

event TaskNodeCancelled:
    taskId: indexed(uint256)
    nodeAddress: address

TASK_TYPE_SD: constant(uint256) = 0
TASK_TYPE_LLM: constant(uint256) = 1

# node states of the simulated node registry
NODE_NONE: constant(uint8) = 0
NODE_FREE: constant(uint8) = 1
NODE_BUSY: constant(uint8) = 2
NODE_BUSY_QUITTING: constant(uint8) = 3

owner: public(address)
taskQueue: TaskQueue
tasks: HashMap[uint256, TaskInfo]
nodeTasks: HashMap[address, uint256]
nextTaskId: uint256
timeout: uint256
numSuccessTasks: uint256
numAbortedTasks: uint256

# Simulated node registry (stands in for Node.sol). All simulated nodes have
# the same GPU, so "LLM tasks need 3 nodes with the same GPU id" always holds.
freeNodes: DynArray[address, MAX_NODES]
freeIndex: HashMap[address, uint256]   # index + 1 in freeNodes
nodeState: HashMap[address, uint8]
nodeVram: public(uint256)


@deploy
def __init__(queue: address):
    self.owner = msg.sender
    self.taskQueue = TaskQueue(queue)
    self.nextTaskId = 1
    self.timeout = 15 * 60
    self.nodeVram = 24
    log OwnershipTransferred(previousOwner=empty(address), newOwner=msg.sender)


@internal
def _onlyOwner():
    assert msg.sender == self.owner, "Ownable: caller is not the owner"


# ---------------------------------------------------------------- client API

@payable
@external
def createTask(taskType: uint256, taskHash: bytes32, dataHash: bytes32, vramLimit: uint256, cap: uint256):
    assert taskType == TASK_TYPE_SD or taskType == TASK_TYPE_LLM, "Invalid task type"
    taskFee: uint256 = msg.value
    taskId: uint256 = self.nextTaskId
    self.nextTaskId = taskId + 1

    if len(self.freeNodes) >= 3 and vramLimit <= self.nodeVram:
        log TaskPending(taskId=taskId, taskType=taskType, creator=msg.sender, taskHash=taskHash, dataHash=dataHash)
        seed: bytes32 = keccak256(concat(blockhash(block.number - 1), taskHash, dataHash))
        self._start(taskId, taskType, msg.sender, taskHash, dataHash, vramLimit, taskFee, seed)
    else:
        # Same order as Task.sol's catch branch: evict, TaskPending, push.
        if staticcall self.taskQueue.size() == staticcall self.taskQueue.getSizeLimit():
            evicted: TaskInQueue = extcall self.taskQueue.removeCheapestTask()
            log TaskAborted(taskId=evicted.id, reason="Task fee is too low")
        log TaskPending(taskId=taskId, taskType=taskType, creator=msg.sender, taskHash=taskHash, dataHash=dataHash)
        if cap == 0:
            # Solidity's `taskFee / cap` fails with Panic(0x12) (division by zero)
            raw_revert(concat(method_id("Panic(uint256)"), convert(18, bytes32)))
        extcall self.taskQueue.pushTask(taskId, taskType, msg.sender, taskHash, dataHash, vramLimit, taskFee, taskFee // cap)


@view
@external
def getTask(taskId: uint256) -> TaskInfo:
    return self.tasks[taskId]


@view
@external
def getNodeTask(nodeAddress: address) -> uint256:
    return self.nodeTasks[nodeAddress]


@view
@external
def totalTasks() -> uint256:
    return self.nextTaskId - 1


@view
@external
def totalSuccessTasks() -> uint256:
    return self.numSuccessTasks


@view
@external
def totalAbortedTasks() -> uint256:
    return self.numAbortedTasks


@external
def updateTimeout(t: uint256):
    self._onlyOwner()
    self.timeout = t


@external
def cancelTask(taskId: uint256):
    if self.tasks[taskId].id != 0:
        callerValid: bool = msg.sender == self.tasks[taskId].creator
        if not callerValid:
            for n: address in self.tasks[taskId].selectedNodes:
                if n == msg.sender:
                    callerValid = True
                    break
        assert callerValid, "Unauthorized to cancel task"
        self._cancelRunning(taskId)
    elif staticcall self.taskQueue.include(taskId):
        task: TaskInQueue = extcall self.taskQueue.removeTask(taskId)
        send(task.creator, task.taskFee)
        log TaskAborted(taskId=taskId, reason="Task Cancelled")
    else:
        raise "Task not exist"


# ---------------------------------------------------------------- internals

@internal
def _takeFreeNode(seed: uint256) -> address:
    count: uint256 = len(self.freeNodes)
    idx: uint256 = seed % count
    node: address = self.freeNodes[idx]
    last: address = self.freeNodes.pop()
    if last != node:
        self.freeNodes[idx] = last
        self.freeIndex[last] = idx + 1
    self.freeIndex[node] = 0
    self.nodeState[node] = NODE_BUSY
    return node


@internal
def _start(taskId: uint256, taskType: uint256, creator: address, taskHash: bytes32, dataHash: bytes32, vramLimit: uint256, taskFee: uint256, seed: bytes32):
    # Needs >= 3 free nodes (checked by the callers).
    t: TaskInfo = empty(TaskInfo)
    t.id = taskId
    t.taskType = taskType
    t.creator = creator
    t.taskHash = taskHash
    t.dataHash = dataHash
    t.vramLimit = vramLimit
    t.commitments = [empty(bytes32), empty(bytes32), empty(bytes32)]
    t.nonces = [empty(bytes32), empty(bytes32), empty(bytes32)]
    t.results = [b"", b"", b""]
    t.timeout = block.timestamp + self.timeout
    t.balance = taskFee
    t.totalBalance = taskFee
    s: uint256 = convert(seed, uint256)
    for i: uint256 in range(3):
        node: address = self._takeFreeNode(s)
        s = convert(keccak256(convert(s, bytes32)), uint256)
        t.selectedNodes.append(node)
        self.nodeTasks[node] = taskId
    self.tasks[taskId] = t
    for i: uint256 in range(3):
        log TaskStarted(taskId=taskId, taskType=taskType, creator=creator, selectedNode=t.selectedNodes[i], taskHash=taskHash, dataHash=dataHash, round=i)


@internal
def _freeNode(node: address):
    self.nodeTasks[node] = 0
    if self.nodeState[node] == NODE_BUSY_QUITTING:
        self.nodeState[node] = NODE_NONE
    elif self.nodeState[node] == NODE_BUSY:
        self.nodeState[node] = NODE_FREE
        self.freeNodes.append(node)
        self.freeIndex[node] = len(self.freeNodes)


@internal
def _startQueued():
    # Stands in for Node.finishTask -> Task.nodeAvailableCallback: while three
    # nodes are free, start the best-paying queued task they can run. popTask
    # reverts "No available task" when none fits; like the real callback we
    # swallow exactly that (raw_call with revert_on_failure=False).
    for i: uint256 in range(MAX_START):
        if len(self.freeNodes) < 3:
            break
        if staticcall self.taskQueue.size() == 0:
            break
        ok: bool = False
        response: Bytes[256] = b""
        ok, response = raw_call(
            self.taskQueue.address,
            abi_encode(True, self.nodeVram, method_id=method_id("popTask(bool,uint256)")),
            max_outsize=256,
            revert_on_failure=False,
        )
        if not ok:
            break
        task: TaskInQueue = abi_decode(response, TaskInQueue)
        seed: bytes32 = keccak256(concat(blockhash(block.number - 1), task.taskHash, convert(task.id, bytes32)))
        self._start(task.id, task.taskType, task.creator, task.taskHash, task.dataHash, task.vramLimit, task.taskFee, seed)


@internal
def _pay(taskId: uint256, node: address, fee: uint256):
    self.tasks[taskId].balance -= fee
    if fee > 0:
        send(node, fee)
    log TaskNodeSuccess(taskId=taskId, nodeAddress=node, fee=fee)


@internal
def _cancelRunning(taskId: uint256):
    assert block.timestamp > self.tasks[taskId].timeout, "Task has not exceeded the deadline yet"
    t: TaskInfo = self.tasks[taskId]
    if t.balance > 0:
        self.tasks[taskId].balance = 0
        send(t.creator, t.balance)
    if not t.aborted:
        log TaskAborted(taskId=taskId, reason="Task Cancelled")
    for n: address in t.selectedNodes:
        if self.nodeTasks[n] == taskId:
            self._freeNode(n)
            log TaskNodeCancelled(taskId=taskId, nodeAddress=n)
    self.tasks[taskId] = empty(TaskInfo)
    self._startQueued()


@internal
def _running(taskId: uint256):
    assert self.tasks[taskId].id != 0, "Task not exist"
    assert not self.tasks[taskId].aborted, "Task is aborted"


# ------------------------------------------- simulated nodes (owner only)

@external
def devRegisterNodes(nodes: DynArray[address, MAX_BATCH]):
    self._onlyOwner()
    for n: address in nodes:
        if self.nodeState[n] == NODE_NONE:
            self.nodeState[n] = NODE_FREE
            self.freeNodes.append(n)
            self.freeIndex[n] = len(self.freeNodes)
        elif self.nodeState[n] == NODE_BUSY_QUITTING:
            self.nodeState[n] = NODE_BUSY
    self._startQueued()


@external
def devUnregisterNodes(nodes: DynArray[address, MAX_BATCH]):
    # A free node leaves at once; a busy one leaves when its task ends.
    self._onlyOwner()
    for n: address in nodes:
        if self.nodeState[n] == NODE_FREE:
            idx: uint256 = self.freeIndex[n] - 1
            last: address = self.freeNodes.pop()
            if last != n:
                self.freeNodes[idx] = last
                self.freeIndex[last] = idx + 1
            self.freeIndex[n] = 0
            self.nodeState[n] = NODE_NONE
        elif self.nodeState[n] == NODE_BUSY:
            self.nodeState[n] = NODE_BUSY_QUITTING


@external
def devSetNodeVram(vram: uint256):
    self._onlyOwner()
    self.nodeVram = vram
    self._startQueued()


@view
@external
def devFreeNodes() -> uint256:
    return len(self.freeNodes)


@external
def devReportSuccess(taskId: uint256, result: Bytes[MAX_RESULT], resultRound: uint256):
    # The three nodes committed and disclosed the same result: what Task.sol
    # does across 7 transactions, condensed. The result node is paid when it
    # reports the upload (devReportResultsUploaded), the other two now.
    self._onlyOwner()
    self._running(taskId)
    assert self.tasks[taskId].resultNode == empty(address), "Task already succeeded"
    assert resultRound < 3, "Round not exist"
    t: TaskInfo = self.tasks[taskId]
    order: DynArray[uint256, 3] = [resultRound, (resultRound + 1) % 3, (resultRound + 2) % 3]
    t.commitmentSubmitRounds = order
    t.resultDisclosedRounds = order
    for i: uint256 in range(3):
        t.nonces[i] = keccak256(concat(convert(taskId, bytes32), convert(i, bytes32)))
        t.commitments[i] = keccak256(concat(result, t.nonces[i]))
        t.results[i] = result
    t.isSuccess = True
    t.resultNode = t.selectedNodes[resultRound]
    self.tasks[taskId] = t
    log TaskResultCommitmentsReady(taskId=taskId)
    share: uint256 = t.totalBalance // 3
    second: address = t.selectedNodes[order[1]]
    third: address = t.selectedNodes[order[2]]
    self._pay(taskId, second, share)
    self._freeNode(second)
    self.numSuccessTasks += 1
    log TaskSuccess(taskId=taskId, result=result, resultNode=t.resultNode)
    self._pay(taskId, third, share)
    self._freeNode(third)
    self._startQueued()


@external
def devReportResultsUploaded(taskId: uint256):
    # The result node uploaded the files to the relay: pay it, free it, and
    # delete the task (all three nodes are settled), then TaskResultUploaded.
    self._onlyOwner()
    self._running(taskId)
    node: address = self.tasks[taskId].resultNode
    assert node != empty(address), "Not result round"
    self._pay(taskId, node, self.tasks[taskId].balance)
    self._freeNode(node)
    self.tasks[taskId] = empty(TaskInfo)
    log TaskResultUploaded(taskId=taskId)
    self._startQueued()


@external
def devReportAbort(taskId: uint256, reason: String[64]):
    # "Task error reported" / "Task result illegal": the fee goes back to the
    # creator and `aborted` becomes visible; devFinishAborted deletes it later.
    self._onlyOwner()
    self._running(taskId)
    assert self.tasks[taskId].resultNode == empty(address), "Task already succeeded"
    creator: address = self.tasks[taskId].creator
    refund: uint256 = self.tasks[taskId].balance
    self.tasks[taskId].balance = 0
    self.tasks[taskId].aborted = True
    if refund > 0:
        send(creator, refund)
    self.numAbortedTasks += 1
    log TaskAborted(taskId=taskId, reason=reason)


@external
def devFinishAborted(taskId: uint256):
    self._onlyOwner()
    assert self.tasks[taskId].id != 0, "Task not exist"
    assert self.tasks[taskId].aborted, "Task is not aborted"
    for n: address in self.tasks[taskId].selectedNodes:
        if self.nodeTasks[n] == taskId:
            self._freeNode(n)
            log TaskNodeCancelled(taskId=taskId, nodeAddress=n)
    self.tasks[taskId] = empty(TaskInfo)
    self._startQueued()


@external
def devNodeCancel(taskId: uint256):
    # A selected node's watchdog cancelling a task past its deadline.
    self._onlyOwner()
    assert self.tasks[taskId].id != 0, "Task not exist"
    self._cancelRunning(taskId)
